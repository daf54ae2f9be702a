"""Ablation steps as "the preset with parts removed": a preset's recipe fragment with techniques
dropped, a technique's options changed, or recipe sections overridden — and the per-seed paired
comparison of each step with the full preset (moeq/contract/stats.py)."""

from __future__ import annotations

import copy

from moeq.contract.presets import PRESETS, merge
from moeq.contract.stats import paired_differences


def preset_variant(preset: str, *, drop: tuple[str, ...] = (), options: dict | None = None, **sections) -> dict:
    """PRESETS[preset] with the techniques named in `drop` removed, `options` ({technique: {key: value}})
    set on the remaining ones, and each keyword section (weights, router, calibration) merged over."""
    frag = copy.deepcopy(dict(PRESETS[preset]))
    techniques = [dict(t) for t in frag.pop("techniques") if t["name"] not in drop]
    for t in techniques:
        t.update((options or {}).get(t["name"], {}))
    for key, value in sections.items():
        base = frag.get(key)
        frag[key] = {**base, **value} if isinstance(base, dict) and isinstance(value, dict) else value
    return {**frag, "techniques": techniques}


def full_recipe(base: dict, fragment: dict) -> dict:
    """A run's recipe: the benchmark's own keys (model, bits, calibration size, eval, seed) with the
    variant's fragment merged over them."""
    return merge(base, fragment)


def outcomes(result: dict) -> dict:
    """The parts of a result that paired comparisons read (per-item task scores, per-window NLL/KL)."""
    return {"tasks": result.get("tasks") or [], "windows": result.get("windows") or {}}


def paired_to(reference: dict, run: dict) -> dict:
    """Paired difference (run − reference, same seed → same evaluation items and windows) of KL and
    average accuracy, each with its 95 % bootstrap interval and whether that interval holds 0."""
    diff = paired_differences(reference, run)
    keep = ("delta", "low", "high", "within_noise", "paired")
    return {k: {f: diff[k].get(f) for f in keep} for k in ("kl", "avg_accuracy")}


def exceeds_spread(mean_a: float, std_a: float, mean_b: float, std_b: float) -> bool:
    """The rule RESULTS.md applies: a difference of seed means counts when it exceeds both rows' seed std."""
    return abs(mean_b - mean_a) > max(std_a, std_b)


def outside_noise(diffs: list[dict], metric: str) -> dict:
    """Over per-seed `paired_to` results: how many seeds' 95 % interval of `metric` excludes 0, by sign."""
    outside = [d[metric]["delta"] for d in diffs if d[metric]["within_noise"] is False]
    return {"higher": sum(1 for v in outside if v > 0), "lower": sum(1 for v in outside if v < 0)}
