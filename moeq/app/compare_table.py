"""Side-by-side table of runs: recipe keys (differences highlighted) and headline metrics, as HTML."""

from __future__ import annotations

from moeq.app.escape import h
from moeq.app.run_label import seed_text


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            out[key] = ", ".join(x.get("name", "?") + "(" + ", ".join(f"{a}={b}" for a, b in x.items() if a != "name")
                                 + ")" for x in v)
        else:
            out[key] = v
    return out


METRIC_ROWS = (("avg bits (all weights)", "avg_weight_bits", "{:.3f}"), ("avg accuracy", "avg_accuracy", "{:.3f}"),
               ("perplexity", "perplexity", "{:.3f}"), ("KL(FP‖Q)", "kl", "{:.4f}"),
               ("top-k agreement", "mean_topk_agreement", "{:.3f}"))


def differing_keys(runs: list[dict]) -> set[str]:
    flat = [flatten(r.get("recipe") or {}) for r in runs]
    keys = set().union(*flat) if flat else set()
    return {k for k in keys if len({repr(f.get(k)) for f in flat}) > 1}


def compare_html(runs: list[dict]) -> str:
    """HTML: headline metrics, then the recipe keys that differ (class 'diff', highlighted); the
    identical keys are folded into a <details> table below."""
    flat = [flatten(r.get("recipe") or {}) for r in runs]
    diff = differing_keys(runs)
    keys = sorted(set().union(*flat)) if flat else []
    head = "<tr><th></th>" + "".join(
        f"<th>{h(r['run_id'][:8])}<br><small>{h(r.get('status', ''))} · {h(seed_text(r))}<br>{h(r.get('model', ''))}"
        f"</small></th>" for r in runs) \
        + "</tr>"

    def row(key: str, cls: str) -> str:
        cells = "".join(f"<td>{h(f.get(key, ''))}</td>" for f in flat)
        return f"<tr class='{cls}'><th>{h(key)}</th>{cells}</tr>"
    metrics = []
    for label, key, fmt in METRIC_ROWS:
        cells = "".join(f"<td>{'-' if r.get(key) is None else fmt.format(r[key])}</td>" for r in runs)
        metrics.append(f"<tr class='metric'><th>{h(label)}</th>{cells}</tr>")
    differing = [row(k, "diff") for k in keys if k in diff]
    same = [row(k, "same") for k in keys if k not in diff]
    style = ("<style>.moeq-cmp td,.moeq-cmp th{padding:2px 8px;text-align:left;border-bottom:1px solid #ddd}"
             ".moeq-cmp tr.diff{background:#fff3b0;font-weight:600}.moeq-cmp tr.metric{background:#eef5ff}</style>")
    return (f"{style}<table class='moeq-cmp'>{head}{''.join(metrics)}{''.join(differing)}</table>"
            f"<details><summary>{len(same)} identical recipe settings</summary>"
            f"<table class='moeq-cmp'>{head}{''.join(same)}</table></details>")
