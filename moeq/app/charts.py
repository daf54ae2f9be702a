"""Plotly figures built from stored result dicts (no torch): the compare page's charts."""

from __future__ import annotations

import plotly.graph_objects as go

from moeq.app.escape import h
from moeq.app.run_label import run_title

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


def run_label(run: dict) -> str:
    """Legend/choice name: id, recipe, all-weights bits (nominal beside) and seed."""
    return h(run_title(run, with_model=False))  # plotly reads tags in text


def _result(run: dict) -> dict:
    return run.get("result") or {}


def accuracy_bars(runs: list[dict]) -> go.Figure:
    """Task accuracy per run, with the FP model's accuracy as a reference marker."""
    fig = go.Figure()
    fp_drawn = False
    for i, run in enumerate(runs):
        m = _result(run).get("metrics", {})
        acc = m.get("accuracy") or {}
        fig.add_bar(name=run_label(run), x=list(acc), y=list(acc.values()), marker_color=PALETTE[i % len(PALETTE)])
        if not fp_drawn and m.get("fp_accuracy"):
            fp = m["fp_accuracy"]
            fig.add_scatter(name="FP", x=list(fp), y=list(fp.values()), mode="markers",
                            marker={"symbol": "line-ew-open", "size": 28, "color": "black", "line": {"width": 3}})
            fp_drawn = True
    fig.update_layout(barmode="group", title="Task accuracy (black bar: full precision)", yaxis_title="accuracy",
                      yaxis_range=[0, 1.05], legend={"orientation": "h"})
    return fig


def routing_lines(runs: list[dict]) -> go.Figure:
    """Per-layer top-k routing agreement with the FP model."""
    fig = go.Figure()
    for i, run in enumerate(runs):
        routing = _result(run).get("metrics", {}).get("routing")
        if routing:
            fig.add_scatter(name=run_label(run), x=routing["layers"], y=routing["topk_agreement"],
                            mode="lines+markers", line={"color": PALETTE[i % len(PALETTE)]})
    fig.update_layout(title="Routing agreement with FP per MoE layer (|TopK_fp ∩ TopK_q| / k)",
                      xaxis={"title": "MoE layer", "tickmode": "linear", "dtick": 1, "tickformat": "d"},
                      yaxis_title="top-k agreement (axis from 0)", yaxis_range=[0, 1.02])
    return fig


def expert_matrix(run: dict, field: str) -> tuple[list[int], list[int], list[list[float | None]]]:
    """(layers, experts, values[layer][expert]) of one expert_stats field."""
    rows = _result(run).get("expert_stats") or []
    layers = sorted({r["layer"] for r in rows})
    experts = sorted({r["expert"] for r in rows})
    table = {(r["layer"], r["expert"]): r.get(field) for r in rows}
    return layers, experts, [[table.get((layer, e)) for e in experts] for layer in layers]


HEATMAP_FIELDS = {"bits": ("bits per expert", "Viridis"), "calib_tokens": ("calibration tokens per expert", "Blues"),
                  "weight_error": ("relative weight error per expert", "Reds")}


def expert_heatmap(run: dict, field: str) -> go.Figure:
    """Layer × expert heatmap of bits, calibration tokens or weight error."""
    title, scale = HEATMAP_FIELDS[field]
    layers, experts, z = expert_matrix(run, field)
    fig = go.Figure(go.Heatmap(z=z, x=[f"E{e}" for e in experts], y=[f"L{layer}" for layer in layers],
                               colorscale=scale, colorbar={"title": field}, hoverongaps=False))
    fig.update_layout(title=f"{title} — {run_label(run)}", xaxis_title="expert", yaxis_title="layer")
    return fig


def pareto_front(points: list[tuple[float, float]], higher_is_better: bool = True) -> list[tuple[float, float]]:
    """Points not dominated by any other (fewer bits and a better metric)."""
    front = []
    best = None
    for bits, value in sorted(points, key=lambda p: (p[0], -p[1] if higher_is_better else p[1])):
        if best is None or (value > best if higher_is_better else value < best):
            front.append((bits, value))
            best = value
    return front


def bits_tradeoff(all_runs: list[dict], metric: str = "avg_accuracy", highlight: set[str] | None = None) -> go.Figure:
    """Metric vs average weight bits across all runs of a model, with the Pareto front."""
    higher = metric != "kl"
    pts = [(r["avg_weight_bits"], r[metric], r) for r in all_runs
           if r.get("avg_weight_bits") is not None and r.get(metric) is not None]
    fig = go.Figure()
    fig.add_scatter(name="runs", x=[p[0] for p in pts], y=[p[1] for p in pts], mode="markers",
                    text=[run_label(p[2]) for p in pts],
                    marker={"size": [14 if highlight and p[2]["run_id"] in highlight else 8 for p in pts],
                            "color": ["#d62728" if highlight and p[2]["run_id"] in highlight else "#1f77b4"
                                      for p in pts]})
    front = pareto_front([(p[0], p[1]) for p in pts], higher)
    fig.add_scatter(name="Pareto front", x=[p[0] for p in front], y=[p[1] for p in front], mode="lines",
                    line={"dash": "dash", "color": "black"})
    fig.update_layout(title=f"{metric} vs average bits (all quantized weights)",
                      xaxis_title="average bits, all quantized weights", yaxis_title=metric)
    return fig


def expert_load(run: dict, layer: int | None = None) -> go.Figure:
    """Fraction of routed tokens per expert, FP vs quantized, for one MoE layer."""
    routing = _result(run).get("metrics", {}).get("routing") or {}
    fp, q = routing.get("expert_load_fp") or {}, routing.get("expert_load_q") or {}
    fig = go.Figure()
    if fp:
        key = str(layer) if layer is not None and str(layer) in fp else sorted(fp, key=int)[0]
        fig.add_bar(name="FP", x=[f"E{e}" for e in range(len(fp[key]))], y=fp[key], marker_color="#7f7f7f")
        fig.add_bar(name="quantized", x=[f"E{e}" for e in range(len(q[key]))], y=q[key], marker_color="#d62728")
        fig.update_layout(title=f"Expert load, layer {key} — {run_label(run)}", barmode="group",
                          xaxis_title="expert", yaxis_title="share of routed tokens")
    return fig
