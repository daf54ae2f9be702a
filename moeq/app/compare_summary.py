"""Headline metrics of 2–N runs against a chosen baseline run: each cell shows the value and its
difference from the baseline; the best value of each row is marked ★ (bold)."""

from __future__ import annotations

from moeq.app.escape import h
from moeq.app.run_label import bits_text, seed_text

# (label, run key or task, format, higher is better)
METRICS = (("average weight bits", "avg_weight_bits", "{:.3f}", False),
           ("average task accuracy", "avg_accuracy", "{:.3f}", True),
           ("perplexity", "perplexity", "{:.3f}", False),
           ("KL(FP‖Q), nats/token", "kl", "{:.4f}", False),
           ("routing top-k agreement", "mean_topk_agreement", "{:.3f}", True))


def _task_rows(runs: list[dict]) -> list[tuple[str, list[float | None]]]:
    names: list[str] = []
    for r in runs:
        names += [t["name"] for t in (r.get("result") or {}).get("tasks", []) if t["name"] not in names]
    rows = []
    for name in names:
        vals = []
        for r in runs:
            t = next((t for t in (r.get("result") or {}).get("tasks", []) if t["name"] == name), None)
            vals.append(None if t is None else t["acc"])
        rows.append((name, vals))
    return rows


def _cells(values: list[float | None], base: int, fmt: str, higher: bool) -> str:
    known = [v for v in values if v is not None]
    best = (max(known) if higher else min(known)) if len(known) > 1 else None
    out = []
    for i, v in enumerate(values):
        if v is None:
            out.append("<td>-</td>")
            continue
        text = fmt.format(v)
        if i != base and values[base] is not None:
            d = v - values[base]
            good = (d > 0) == higher
            color = "#2a7d2a" if good and d != 0 else ("#b22222" if d != 0 else "#666")
            text += f" <small style='color:{color}'>({fmt.format(d) if d < 0 else '+' + fmt.format(d)})</small>"
        mark = best is not None and v == best and len(set(known)) > 1
        out.append(f"<td class='best'><b>★ {text}</b></td>" if mark else f"<td>{text}</td>")
    return "".join(out)


def metrics_html(runs: list[dict], baseline_id: str | None = None) -> str:
    """HTML table: one column per run (the baseline first-class marked), rows = metrics and tasks."""
    ids = [r["run_id"] for r in runs]
    base = ids.index(baseline_id) if baseline_id in ids else 0
    head = "<tr><th></th>" + "".join(
        f"<th>{h(r['run_id'][:8])}{' (baseline)' if i == base else ''}<br><small>{h(r.get('recipe_summary', ''))}"
        f"<br>{h(bits_text(r))} · {h(seed_text(r))}</small></th>" for i, r in enumerate(runs)) + "</tr>"
    rows = []
    for label, key, fmt, higher in METRICS:
        rows.append(f"<tr class='metric'><th>{h(label)}</th>{_cells([r.get(key) for r in runs], base, fmt, higher)}</tr>")
    for name, vals in _task_rows(runs):
        rows.append(f"<tr class='task'><th>accuracy {h(name)}</th>{_cells(vals, base, '{:.3f}', True)}</tr>")
    style = ("<style>.moeq-base td,.moeq-base th{padding:2px 8px;text-align:left;border-bottom:1px solid #ddd;"
             "white-space:nowrap}.moeq-base td.best{background:#eaf7ea}</style>")
    note = ("<small>differences are against the baseline run; ★ marks the best value of each row "
            "(fewer bits, higher accuracy and agreement, lower perplexity and KL)</small>")
    return f"{style}<table class='moeq-base' id='compare-metrics'>{head}{''.join(rows)}</table>{note}"
