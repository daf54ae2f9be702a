"""A study as text (`moeq study show`) and HTML (the Study tab): progress "n of N", the grid as mean ±
sample sd over seeds (n = succeeded runs), the runs that failed with their reason, and the best grid
point at ≤ B bits."""

from __future__ import annotations

from moeq.app.escape import h

COLUMNS = (("avg_weight_bits", "bits", "{:.3f}"), ("avg_accuracy", "avg accuracy", "{:.3f}"),
           ("perplexity", "perplexity", "{:.3f}"), ("kl", "KL(FP||Q)", "{:.5f}"))


def cell(m: dict, fmt: str) -> str:
    if m["mean"] is None:
        return "-"
    text = fmt.format(m["mean"])
    if m["sd"] is not None:
        text += f" ± {fmt.format(m['sd'])}"
    return f"{text} (n={m['n']})"


def point_label(point: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in point.items()) or "(base recipe)"


def _header(d: dict) -> list[str]:
    c = d["counts"]
    est = d.get("estimate_s")
    return [f"study {d['study_id']}  {d['state']}  {d['progress']} finished"
            f"{' — ' + d['name'] if d.get('name') else ''}",
            f"model   {d['model']}   user {d.get('user')} / {d.get('project')}   created {(d.get('created_at') or '')[:19]}",
            f"runs    {c['succeeded']} succeeded, {c['failed']} failed, {c['cancelled']} cancelled, "
            f"{c['running']} running, {c['queued']} queued"
            + (f"   estimated {est / 60:.1f} worker-minutes" if est else "")]


def _fits(r: dict, key: str, max_bits: float) -> bool:
    return (r[key]["mean"] is not None and r["avg_weight_bits"]["mean"] is not None
            and r["avg_weight_bits"]["mean"] <= max_bits + 1e-9)


def ranking_metric(grid: list[dict]) -> str:
    """Average accuracy when the grid has it, else KL(FP‖Q) (evaluations without tasks)."""
    return "avg_accuracy" if any(r["avg_accuracy"]["mean"] is not None for r in grid) else "kl"


def best_at(grid: list[dict], max_bits: float, key: str = "avg_accuracy") -> dict | None:
    """The grid point with the best mean `key` (highest accuracy, lowest KL) among those whose mean
    bits ≤ max_bits."""
    ok = [r for r in grid if _fits(r, key, max_bits)]
    if not ok:
        return None
    return max(ok, key=lambda r: r[key]["mean"]) if key == "avg_accuracy" else min(ok, key=lambda r: r[key]["mean"])


def format_study(d: dict) -> str:
    lines = _header(d)
    grid = d.get("grid") or []
    label_w = max([len(point_label(r["point"])) for r in grid] + [10]) + 2
    lines.append("")
    lines.append(f"{'grid point':<{label_w}} {'seeds':<10} " + " ".join(f"{label:>26}" for _, label, _ in COLUMNS))
    for r in grid:
        seeds = ",".join(str(s) for s in r["seeds"] if s is not None) or "-"
        lines.append(f"{point_label(r['point']):<{label_w}} {seeds:<10} "
                     + " ".join(f"{cell(r[k], fmt):>26}" for k, _, fmt in COLUMNS))
    failed = [r for r in d.get("runs", []) if r["status"] == "failed"]
    if failed:
        lines.append("")
        lines.append("failed runs (`moeq study rerun` queues them again):")
        lines += [f"  {r['run_id'][:8]} {point_label(r['point'])}: {r.get('error') or 'no reason recorded'}"
                  for r in failed]
    return "\n".join(lines)


def study_html(d: dict) -> str:
    head = ("<tr><th>grid point</th><th>seeds</th><th>status</th>"
            + "".join(f"<th>{h(label)}</th>" for _, label, _ in COLUMNS) + "</tr>")
    body = []
    for r in d.get("grid") or []:
        seeds = ",".join(str(s) for s in r["seeds"] if s is not None) or "-"
        status = ", ".join(sorted({s for s in r["statuses"]}))
        body.append(f"<tr><td>{h(point_label(r['point']))}</td><td>{h(seeds)}</td><td>{h(status)}</td>"
                    + "".join(f"<td>{h(cell(r[k], fmt))}</td>" for k, _, fmt in COLUMNS) + "</tr>")
    header = "<br>".join(h(line) for line in _header(d))
    return (f"<div id='study-header'>{header}</div><table id='study-grid'>{head}{''.join(body)}</table>"
            "<small>mean ± sample standard deviation over the grid point's succeeded runs (one per seed), n runs</small>")


def pareto_figure(d: dict, metric: str = "avg_accuracy"):
    """Mean `metric` vs mean bits of every grid point, error bars = sample sd over seeds, with the
    Pareto front of the means (fewer bits and a better metric)."""
    import plotly.graph_objects as go

    from moeq.app.charts import pareto_front

    higher = metric not in ("kl", "perplexity")
    rows = [r for r in d.get("grid") or [] if r[metric]["mean"] is not None and r["avg_weight_bits"]["mean"] is not None]
    fig = go.Figure()
    name = {"avg_accuracy": "average accuracy", "kl": "KL(FP ‖ Q)", "perplexity": "perplexity"}[metric]
    if not rows:
        fig.add_annotation(text=f"no finished grid point has {name} yet", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
        return fig
    fig.add_scatter(name="grid points (mean ± sd over seeds)", mode="markers",
                    x=[r["avg_weight_bits"]["mean"] for r in rows], y=[r[metric]["mean"] for r in rows],
                    error_y={"type": "data", "array": [r[metric]["sd"] or 0.0 for r in rows], "visible": True},
                    hovertext=[f"{point_label(r['point'])} (n={r[metric]['n']})" for r in rows],
                    hovertemplate="%{hovertext}<br>bits %{x:.3f}<br>" + name + " %{y:.4f}<extra></extra>")
    front = pareto_front([(r["avg_weight_bits"]["mean"], r[metric]["mean"]) for r in rows], higher)
    fig.add_scatter(name="Pareto front", x=[p[0] for p in front], y=[p[1] for p in front], mode="lines",
                    line={"dash": "dash", "color": "black"})
    fig.update_layout(title=f"{name} vs average weight bits ({'higher' if higher else 'lower'} is better)",
                      xaxis_title="average weight bits", yaxis_title=name, legend={"orientation": "h", "y": -0.25})
    return fig


def best_text(d: dict, max_bits: float | None) -> str:
    """"Best recipe at ≤ B bits" and how sure: its mean ± sd, whether the runner-up's mean lies more
    than one sd away (else these seeds do not settle the order of the two), and on how many of the
    seeds both ran it beats the runner-up."""
    if max_bits is None:
        return ""
    grid = d.get("grid") or []
    key = ranking_metric(grid)
    name, fmt = ("average accuracy", "{:.3f}") if key == "avg_accuracy" else ("KL(FP||Q)", "{:.5f}")
    best = best_at(grid, max_bits, key)
    if best is None:
        return f"no finished grid point at ≤ {max_bits:g} bits"
    m = best[key]
    text = f"best at ≤ {max_bits:g} bits: {point_label(best['point'])} — {name} {cell(m, fmt)}"
    others = [r for r in grid if r is not best and _fits(r, key, max_bits)]
    if not others:
        return text + "; the only grid point that fits"
    second = best_at(others, max_bits, key)
    gap = abs(m["mean"] - second[key]["mean"])
    spread = max(m["sd"] or 0.0, second[key]["sd"] or 0.0)
    if m["n"] < 2 or second[key]["n"] < 2:
        sure = "not sure: fewer than two seeds, no spread to judge by"
    elif gap > spread:
        sure = f"ahead of the runner-up ({point_label(second['point'])}) by {fmt.format(gap)}, more than one sd"
    else:
        sure = (f"not sure: the runner-up ({point_label(second['point'])}) is {fmt.format(gap)} behind, within one "
                f"sd ({fmt.format(spread)})")
    return f"{text}; {sure}{_seed_wins(d, best, second, key)}"


def _seed_wins(d: dict, best: dict, second: dict, key: str) -> str:
    """", better on k of m seeds": the two grid points' runs paired by seed (succeeded runs only)."""
    def by_seed(row):
        return {r["point"].get("seed"): r[key] for r in d.get("runs") or []
                if r["run_id"] in row["runs"] and r["status"] == "succeeded" and r[key] is not None}

    a, b = by_seed(best), by_seed(second)
    common = [s for s in a if s in b]
    if not common:
        return ""
    wins = sum((a[s] > b[s]) if key == "avg_accuracy" else (a[s] < b[s]) for s in common)
    return f"; better on {wins} of {len(common)} seeds"
