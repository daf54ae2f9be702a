"""The one shape every reader gets a stored result in (app compare page and charts, CLI, jobs).

Per-expert facts live once, in `expert_stats` (one row per layer and expert: bits, group_size,
calib_tokens, weight_error, fallback, fallback_reason). Results stored before that (runs of the
0002 schema and earlier) also kept them in `bits.experts`, `calibration.tokens_per_expert` and
`calibration.fallbacks`; `normalize_result` brings such a result to the current shape when it is read.
"""

from __future__ import annotations

EXPERT_FIELDS = ("bits", "group_size", "calib_tokens", "weight_error", "fallback", "fallback_reason")


def _old_expert_rows(bits: dict, tokens: dict) -> list[dict]:
    """expert_stats rebuilt from the old per-layer maps ({"layer": {"expert": value}})."""
    keys = sorted({(int(layer), int(e)) for m in (bits, tokens) for layer, row in (m or {}).items() for e in row})
    return [{"layer": layer, "expert": e, "bits": (bits.get(str(layer)) or {}).get(str(e)), "group_size": None,
             "calib_tokens": (tokens.get(str(layer)) or {}).get(str(e)), "weight_error": None, "fallback": None}
            for layer, e in keys]


def normalize_result(result: dict | None) -> dict | None:
    """A copy of a stored result in the current shape (unchanged when it already has it)."""
    if not result:
        return result
    out = dict(result)
    bits = dict(out.get("bits") or {})
    calib = dict(out.get("calibration") or {})
    old_bits = bits.pop("experts", None) or {}
    old_tokens = calib.pop("tokens_per_expert", None) or {}
    fallbacks = calib.pop("fallbacks", None) or []
    rows = out.get("expert_stats")
    if rows is None:
        rows = _old_expert_rows(old_bits, old_tokens)
    reasons = {(f.get("layer"), f.get("expert")): f for f in fallbacks if isinstance(f, dict)}
    out["expert_stats"] = [_expert_row(r, reasons.get((r.get("layer"), r.get("expert")))) for r in rows]
    if "bits" in out:
        out["bits"] = bits
    if "calibration" in out:
        out["calibration"] = calib
    return out


def _expert_row(row: dict, fallback: dict | None) -> dict:
    out = {"layer": row.get("layer"), "expert": row.get("expert"), **{k: row.get(k) for k in EXPERT_FIELDS}}
    if fallback is not None:
        out["fallback"] = out["fallback"] or fallback.get("fallback")
        out["fallback_reason"] = out["fallback_reason"] or fallback.get("reason")
    return out


def fallback_rows(result: dict) -> list[dict]:
    """The experts that fell back from their method, in layer/expert order."""
    return [r for r in result.get("expert_stats") or [] if r.get("fallback")]
