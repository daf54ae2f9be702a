"""Which tokens of which source each part of a finished run read (`result["text_ranges"]`), and the
warnings they call for: a source too short for the windows asked, or (a guard that should never fire,
moeq.quant_core.streams lays the ranges out disjoint) evaluation or router-training text that overlaps
another part's."""

from __future__ import annotations

from moeq.quant_core.calibration.data import TextRange


def text_ranges(result: dict, evaluation: dict | None) -> dict[str, dict]:
    """Every range a finished run read, by what read it: evaluation, calibration, balance reserve, MoQE
    variants' calibration and reserve (tagged " (variant i)"), router training."""
    out = {}
    if evaluation:
        out["evaluation"] = evaluation
    parts = [("", result.get("calibration") or {})]
    moqe = result.get("moqe") or {}
    parts += [(f" (variant {i})", v.get("calibration") or {}) for i, v in enumerate(moqe.get("variants", []))]
    for tag, cal in parts:
        for key, what in (("text", "calibration"), ("reserve_text", "balance reserve")):
            if cal.get(key):
                out[what + tag] = cal[key]
    if (moqe.get("router_train_windows") or {}).get("text"):
        out["router training"] = moqe["router_train_windows"]["text"]
    return out


def _kind(label: str) -> str:
    return label.split(" (")[0]


def _checked(a: str, b: str) -> bool:
    """Pairs that must not overlap: anything against the evaluation or the router training, and one
    recipe's calibration against its own reserve (MoQE variants calibrate on the same text on purpose)."""
    kinds = {_kind(a), _kind(b)}
    return bool(kinds & {"evaluation", "router training"}) or a[len(_kind(a)):] == b[len(_kind(b)):]


def _to_range(r: dict) -> TextRange:
    return TextRange(r["source"], r["split"], r["seed"], *r["token_range"], r["windows"], r["requested_windows"],
                     r["source_tokens"])


def range_warnings(ranges: dict[str, dict]) -> list[str]:
    out = []
    for what, r in ranges.items():
        if r["windows"] < r["requested_windows"]:
            start, end = r["token_range"]
            out.append(f"the {what} text ({r['source']}) had room for {r['windows']} of the {r['requested_windows']} "
                       f"windows asked for (its tokens {start}-{end}"
                       + (f" of {r['source_tokens']}" if r["source_tokens"] is not None else "")
                       + (f"; the tokens before {start} are read by another part of the run" if start else "")
                       + "): give a longer source")
    items = list(ranges.items())
    for i, (a, ra) in enumerate(items):
        for b, rb in items[i + 1:]:
            if _checked(a, b) and _to_range(ra).overlaps(_to_range(rb)):
                out.append(f"the {a} and {b} text overlap ({ra['source']} tokens {ra['token_range']} and "
                           f"{rb['token_range']}): metrics may be measured on calibration text")
    return out
