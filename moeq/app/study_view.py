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


def best_at(grid: list[dict], max_bits: float, key: str = "avg_accuracy") -> dict | None:
    """The grid point with the highest mean `key` among those whose mean bits ≤ max_bits."""
    ok = [r for r in grid if r[key]["mean"] is not None and r["avg_weight_bits"]["mean"] is not None
          and r["avg_weight_bits"]["mean"] <= max_bits + 1e-9]
    return max(ok, key=lambda r: r[key]["mean"]) if ok else None


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
