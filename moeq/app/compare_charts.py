"""Compare-page figures that put runs next to each other on equal terms: layer × expert heatmaps of
every run on ONE shared colour scale plus their differences from a baseline run, a routing chart
whose axis fits the data, and the bits trade-off with labelled points and human axis names."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from moeq.app.charts import PALETTE, expert_matrix, pareto_front, run_label

WEIGHT_ERROR_DEF = ("relative weight error = ‖W_q − W‖_F / ‖W‖_F over the expert's gate, up and down "
                    "projections (unitless; 0.05 = 5 %)")
FIELDS = {  # field → (title, unit for axes/colour bar, colour scale, hover definition)
    "bits": ("weight bits per expert", "bits", "Viridis", "bits of the expert's weights"),
    "calib_tokens": ("calibration tokens routed to each expert", "tokens", "Blues",
                     "calibration tokens the router sent to this expert"),
    "weight_error": ("relative weight error per expert", "‖ΔW‖/‖W‖", "Reds", WEIGHT_ERROR_DEF),
}
METRIC_NAMES = {"avg_accuracy": "average task accuracy (fraction correct)",
                "kl": "KL(FP ‖ quantized), nats per token", "perplexity": "perplexity",
                "mean_topk_agreement": "routing top-k agreement (fraction)"}


def message_figure(text: str) -> go.Figure:
    """A figure that says why there is nothing to draw (instead of empty axes)."""
    fig = go.Figure()
    fig.add_annotation(text=text, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 14})
    fig.update_layout(xaxis={"visible": False}, yaxis={"visible": False}, height=260)
    return fig


def default_field(runs: list[dict]) -> str:
    """bits when they vary across experts or runs; else calibration tokens (when recorded); else error."""
    values = set()
    for run in runs:
        _, _, z = expert_matrix(run, "bits")
        values |= {v for row in z for v in row if v is not None}
    if len(values) > 1:
        return "bits"
    for run in runs:
        _, _, z = expert_matrix(run, "calib_tokens")
        if any(v for row in z for v in row if v is not None):
            return "calib_tokens"
    return "weight_error"


def _range(mats: list[list[list[float | None]]]) -> tuple[float, float]:
    vals = [v for z in mats for row in z for v in row if v is not None]
    if not vals:
        return 0.0, 1.0
    lo, hi = min(vals), max(vals)
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def heatmaps(runs: list[dict], field: str) -> go.Figure:
    """One layer × expert heatmap per run, side by side, all on one colour scale (coloraxis)."""
    title, unit, scale, definition = FIELDS[field]
    data = [expert_matrix(run, field) for run in runs]
    if not any(z for _, _, z in data):
        return message_figure(f"no per-expert {title} recorded for these runs")
    lo, hi = _range([z for _, _, z in data])
    fig = make_subplots(rows=1, cols=len(runs), subplot_titles=[run_label(r)[:70] for r in runs],
                        horizontal_spacing=0.03, shared_yaxes=True)
    for i, (layers, experts, z) in enumerate(data):
        fig.add_trace(go.Heatmap(z=z, x=[f"E{e}" for e in experts], y=[f"L{layer}" for layer in layers],
                                 coloraxis="coloraxis", hoverongaps=False, name=runs[i]["run_id"][:8],
                                 hovertemplate=f"%{{y}} %{{x}}: %{{z}} {unit}<extra>{runs[i]['run_id'][:8]}"
                                               f"<br>{definition}</extra>"), row=1, col=i + 1)
        fig.update_xaxes(title_text="expert", row=1, col=i + 1)
    fig.update_yaxes(title_text="MoE layer", row=1, col=1)
    fig.update_layout(title=f"{title} — one colour scale for all runs", height=360,
                      coloraxis={"colorscale": scale, "cmin": lo, "cmax": hi, "colorbar": {"title": unit}})
    return fig


def heatmap_differences(runs: list[dict], field: str, baseline_id: str) -> go.Figure:
    """Each other run minus the baseline, expert by expert, on one diverging scale centred on 0."""
    title, unit, _, definition = FIELDS[field]
    base = next((r for r in runs if r["run_id"] == baseline_id), runs[0])
    others = [r for r in runs if r is not base]
    bl, be, bz = expert_matrix(base, field)
    diffs = []
    for run in others:
        layers, experts, z = expert_matrix(run, field)
        if (layers, experts) != (bl, be):
            diffs.append(None)
            continue
        diffs.append([[None if a is None or b is None else a - b for a, b in zip(row, brow)]
                      for row, brow in zip(z, bz)])
    usable = [d for d in diffs if d]
    if not others or not usable:
        return message_figure("no difference to show (one run, or runs with different layer × expert shapes)")
    m = max((abs(v) for d in usable for row in d for v in row if v is not None), default=0.0) or 1.0
    fig = make_subplots(rows=1, cols=len(others), horizontal_spacing=0.03, shared_yaxes=True,
                        subplot_titles=[f"{r['run_id'][:8]} − {base['run_id'][:8]}" for r in others])
    for i, (run, d) in enumerate(zip(others, diffs)):
        if d is None:
            continue
        fig.add_trace(go.Heatmap(z=d, x=[f"E{e}" for e in be], y=[f"L{layer}" for layer in bl],
                                 coloraxis="coloraxis", hoverongaps=False,
                                 hovertemplate=f"%{{y}} %{{x}}: %{{z:+}} {unit} vs baseline<extra>{definition}"
                                               "</extra>"), row=1, col=i + 1)
        fig.update_xaxes(title_text="expert", row=1, col=i + 1)
    fig.update_yaxes(title_text="MoE layer", row=1, col=1)
    fig.update_layout(title=f"difference from baseline {base['run_id'][:8]}: {title}", height=360,
                      coloraxis={"colorscale": "RdBu", "reversescale": True, "cmin": -m, "cmax": m,
                                 "colorbar": {"title": f"Δ {unit}"}})
    return fig


def routing_lines(runs: list[dict]) -> go.Figure:
    """Per-layer top-k routing agreement, y axis fitted to the data (0.95–0.99 stays readable)."""
    fig = go.Figure()
    values = []
    for i, run in enumerate(runs):
        routing = (run.get("result") or {}).get("metrics", {}).get("routing")
        if routing:
            values += routing["topk_agreement"]
            fig.add_scatter(name=run_label(run), x=routing["layers"], y=routing["topk_agreement"],
                            mode="lines+markers", line={"color": PALETTE[i % len(PALETTE)]})
    if not values:
        return message_figure("no routing statistics recorded for these runs")
    lo, hi = min(values), max(values)
    pad = max(0.005, 0.1 * (hi - lo))
    y0, y1 = max(0.0, lo - pad), min(1.0, hi + pad) + 0.001
    said = "" if y0 <= 0.0 else f"<br><sub>y axis zoomed to {y0:.3f}–{min(1.0, y1):.3f} (not from 0)</sub>"
    fig.update_layout(title=f"Routing agreement with FP per MoE layer (|TopK_fp ∩ TopK_q| / k){said}",
                      xaxis={"title": "MoE layer", "tickmode": "linear", "dtick": 1, "tickformat": "d"},
                      yaxis_title="top-k agreement (fraction of tokens)", yaxis_range=[y0, y1],
                      legend={"orientation": "h", "y": -0.25})
    return fig


def bits_tradeoff(all_runs: list[dict], metric: str, highlight: set[str]) -> go.Figure:
    """Metric vs average weight bits over every run of the model; compared runs labelled by id."""
    higher = metric not in ("kl", "perplexity")
    pts = [(r["avg_weight_bits"], r[metric], r) for r in all_runs
           if r.get("avg_weight_bits") is not None and r.get(metric) is not None]
    if not pts:
        return message_figure(f"no finished runs with {METRIC_NAMES.get(metric, metric)}")
    name = METRIC_NAMES.get(metric, metric)
    fig = go.Figure()
    for label, picked, size, color in (("other runs of this model", False, 8, "#1f77b4"),
                                       ("compared runs", True, 14, "#d62728")):
        mine = [p for p in pts if (p[2]["run_id"] in highlight) == picked]  # one colour per trace: the legend matches
        if not mine:
            continue
        fig.add_scatter(name=label, x=[p[0] for p in mine], y=[p[1] for p in mine], mode="markers+text",
                        text=[p[2]["run_id"][:8] if picked else "" for p in mine],
                        textposition="top center", hovertext=[run_label(p[2]) for p in mine],
                        hovertemplate="%{hovertext}<br>bits %{x:.3f}<br>" + name + " %{y:.4f}<extra></extra>",
                        marker={"size": size, "color": color})
    front = pareto_front([(p[0], p[1]) for p in pts], higher)
    fig.add_scatter(name="Pareto front", x=[p[0] for p in front], y=[p[1] for p in front], mode="lines",
                    line={"dash": "dash", "color": "black"})
    better = "higher is better" if higher else "lower is better"
    short = {"avg_accuracy": "Average accuracy", "kl": "KL(FP ‖ Q)"}.get(metric, name)
    fig.update_layout(title=f"{short} vs average weight bits ({better}; compared runs in red)",
                      xaxis_title="average weight bits per parameter", yaxis_title=name,
                      legend={"orientation": "h", "y": -0.25})
    return fig
