"""Paired differences (moeq.contract.stats) and seed groups as text (`moeq runs compare`) and HTML
(the Compare page): per run against the baseline, Δ with its 95 % interval, "within noise" when the
interval contains 0, McNemar p for 0/1 tasks; runs not evaluated on the same items say why."""

from __future__ import annotations

import json

from moeq.app.escape import h
from moeq.contract.stats import spread, without_seeds

ROWS = (("avg_accuracy", "Δ average accuracy", "{:+.3f}"), ("perplexity", "Δ perplexity", "{:+.3f}"),
        ("kl", "Δ KL(FP||Q)", "{:+.5f}"))
GROUP_METRICS = (("avg_weight_bits", "bits", "{:.3f}"), ("avg_accuracy", "avg accuracy", "{:.3f}"),
                 ("perplexity", "perplexity", "{:.3f}"), ("kl", "KL(FP||Q)", "{:.5f}"))


def cell(p: dict | None, fmt: str = "{:+.3f}") -> str:
    """One paired difference as text: 'Δ [low, high] within noise · McNemar p=…' or 'not paired: why'."""
    if p is None:
        return "-"
    if not p["paired"]:
        return f"not paired: {p['reason']}"
    text = f"{fmt.format(p['delta'])} [{fmt.format(p['low'])}, {fmt.format(p['high'])}]"
    text += " within noise" if p["within_noise"] else " real"
    if p.get("mcnemar_p") is not None:
        text += f" p={p['mcnemar_p']:.3g}"
    return text


def paired_rows(paired: list[dict | None]) -> list[tuple[str, list[str]]]:
    """(label, one cell per run) for the headline figures and every task."""
    rows = [(label, [cell(p and p[key], fmt) for p in paired]) for key, label, fmt in ROWS]
    names: list[str] = []
    for p in paired:
        names += [t["name"] for t in (p or {}).get("tasks", []) if t["name"] not in names]
    for name in names:
        rows.append((f"Δ acc {name}", [cell(next((t for t in (p or {}).get("tasks", []) if t["name"] == name), None))
                                       for p in paired]))
    return rows


def _note(paired: list[dict | None]) -> str:
    p = next((p for p in paired if p), None)
    if p is None:
        return "no run has a result to pair"
    return (f"paired differences against run {p['baseline'][:8]} on the items/windows both scored: Δ [95 % interval] "
            f"from a paired bootstrap ({p['resamples']} resamples, seed {p['seed']}); 'within noise' when the "
            f"interval contains 0, 'real' otherwise; p = exact McNemar test (0/1 tasks)")


def format_paired(runs: list[dict], width: int = 44) -> str:
    """Text block for `moeq runs compare` (uses each run's "paired" from compare_runs)."""
    paired = [r.get("paired") for r in runs]
    rows = paired_rows(paired)
    label_w = max(len(label) for label, _ in rows) + 2
    head = " " * label_w + "".join(f"{r['run_id'][:8]:>{width}}" for r in runs)
    body = [f"{label:<{label_w}}" + "".join(f"{c[:width - 2]:>{width}}" for c in cells) for label, cells in rows]
    return "\n".join([_note(paired), head, *body])


def paired_html(runs: list[dict], paired: list[dict | None]) -> str:
    head = "<tr><th></th>" + "".join(f"<th>{h(r['run_id'][:8])}</th>" for r in runs) + "</tr>"
    body = []
    for label, cells in paired_rows(paired):
        tds = "".join(f"<td class='{'noise' if 'within noise' in c else 'real' if ' real' in c else 'np'}'>{h(c)}</td>"
                      for c in cells)
        body.append(f"<tr><th>{h(label)}</th>{tds}</tr>")
    style = ("<style>#compare-paired td,#compare-paired th{padding:2px 8px;text-align:left;white-space:nowrap;"
             "border-bottom:1px solid #ddd}#compare-paired td.noise{color:#666}#compare-paired td.real{font-weight:bold}"
             "</style>")
    return f"{style}<table id='compare-paired'>{head}{''.join(body)}</table><small>{h(_note(paired))}</small>"


def group_key(run: dict) -> str:
    return json.dumps([run.get("model"), without_seeds(run.get("recipe") or {})], sort_keys=True, default=str)


def seed_groups(runs: list[dict]) -> list[list[dict]]:
    """Runs grouped by recipe without its seeds (repeats of one recipe), in first-seen order."""
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(group_key(r), []).append(r)
    return list(groups.values())


def group_rows(runs: list[dict]) -> list[tuple[str, list[str]]]:
    """(recipe and seeds, mean ± sd (n) per headline metric) for every group of repeats (n ≥ 2)."""
    out = []
    for g in seed_groups(runs):
        if len(g) < 2:
            continue
        seeds = ",".join(str((r.get("recipe") or {}).get("seed", "?")) for r in g)
        label = f"{g[0].get('recipe_summary') or g[0]['run_id'][:8]} seeds {seeds}"
        ok = [r for r in g if r.get("status") == "succeeded"]
        out.append((label, [spread(r.get(key) for r in ok).text(fmt) for key, _, fmt in GROUP_METRICS]))
    return out


def format_groups(runs: list[dict]) -> str:
    rows = group_rows(runs)
    if not rows:
        return ""
    lines = ["repeats of one recipe over seeds (mean ± sd over succeeded runs, n):",
             "  " + " | ".join(label for _, label, _ in GROUP_METRICS)]
    for label, cells in rows:
        lines.append(f"  {label}: " + " | ".join(cells))
    return "\n".join(lines)


def groups_html(runs: list[dict]) -> str:
    rows = group_rows(runs)
    if not rows:
        return ""
    head = "<tr><th>recipe (seeds)</th>" + "".join(f"<th>{h(label)}</th>" for _, label, _ in GROUP_METRICS) + "</tr>"
    body = "".join(f"<tr><td>{h(label)}</td>{''.join(f'<td>{h(c)}</td>' for c in cells)}</tr>" for label, cells in rows)
    return (f"<div style='margin-top:10px'><b>repeats of one recipe over seeds</b> (mean ± sample sd, n)"
            f"<table id='compare-groups'>{head}{body}</table></div>")
