"""Checks of the result JSON contract (DESIGN.md §4.3), shared by CLI, jobs and app tests."""

from __future__ import annotations

NUMBER = (int, float)


def validate_result(r: dict) -> None:
    """Raise AssertionError naming the first contract violation."""
    for key in ("run_id", "status", "model", "recipe", "metrics", "bits", "calibration", "timings", "environment"):
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
    for layer, experts in b["experts"].items():
        assert layer.isdigit() and all(e.isdigit() and isinstance(v, int) for e, v in experts.items())
    c = r["calibration"]
    assert isinstance(c["tokens_per_expert"], dict) and isinstance(c["fallbacks"], list)
    assert all(isinstance(v, NUMBER) for v in r["timings"].values())
    assert {"device", "torch", "moeq"} <= set(r["environment"])
