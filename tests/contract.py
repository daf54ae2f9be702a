"""Checks of the result JSON contract (DESIGN.md §4.3), shared by CLI, jobs and app tests."""

from __future__ import annotations

NUMBER = (int, float)
EXPERT_KEYS = {"layer", "expert", "bits", "group_size", "calib_tokens", "weight_error", "fallback", "fallback_reason"}


def validate_result(r: dict) -> None:
    """Raise AssertionError naming the first contract violation."""
    for key in ("run_id", "status", "model", "recipe", "metrics", "bits", "calibration", "expert_stats", "timings",
                "environment"):
        assert key in r, f"result lacks {key!r}"
    assert r["status"] in ("succeeded", "failed", "cancelled")
    m = r["metrics"]
    for key in ("accuracy", "fp_accuracy", "kl"):
        assert key in m, f"metrics lacks {key!r}"
    assert isinstance(m["accuracy"], dict) and isinstance(m["fp_accuracy"], dict)
    if "perplexity" in m:
        assert isinstance(m["perplexity"], NUMBER) and isinstance(m["fp_perplexity"], NUMBER)
    if "routing" in m:
        routing = m["routing"]
        n_layers = len(routing["layers"])
        for key in ("topk_agreement", "top1_agreement", "kl"):
            assert len(routing[key]) == n_layers, f"routing.{key} has the wrong length"
        assert all(0.0 <= a <= 1.0 for a in routing["topk_agreement"])
        assert isinstance(routing["mean_topk_agreement"], NUMBER)
    b = r["bits"]
    assert isinstance(b["avg_weight_bits"], NUMBER) and isinstance(b["bits_per_param_with_overhead"], NUMBER)
    assert "experts" not in b, "per-expert bits belong in expert_stats"
    assert not {"tokens_per_expert", "fallbacks"} & set(r["calibration"]), "per-expert facts belong in expert_stats"
    rows = r["expert_stats"]
    assert isinstance(rows, list)
    assert len({(x["layer"], x["expert"]) for x in rows}) == len(rows), "one expert_stats row per expert"
    for x in rows:
        assert set(x) == EXPERT_KEYS, f"expert_stats row keys {sorted(x)}"
        assert x["bits"] is None or isinstance(x["bits"], int)
        assert x["calib_tokens"] is None or isinstance(x["calib_tokens"], int)
    for t in r.get("tasks", []):
        assert len(t.get("item_ids", [])) == len(t.get("item_scores", [])), f"task {t['name']}: ids and scores differ"
        assert len(set(t.get("item_ids", []))) == len(t.get("item_ids", [])), f"task {t['name']}: repeated item id"
    w = r.get("windows")
    if w is not None:
        assert not w["ids"] or len(w["ids"]) == len(w["nll"]), "one id per window"
        assert len(w["kl"]) <= len(w["nll"]) and all(isinstance(v, NUMBER) for v in w["nll"] + w["kl"])
    assert all(isinstance(v, NUMBER) for v in r["timings"].values())
    assert {"device", "torch", "moeq"} <= set(r["environment"])
