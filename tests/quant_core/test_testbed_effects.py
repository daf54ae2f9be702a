"""Each technique moves the metric it targets, in the direction the paper claims, on the trained
testbeds, against the baseline it modifies, at a setting where the baseline visibly degrades."""

from __future__ import annotations

import pytest

from tests.conftest import run_on_testbed

TESTBEDS = ("testbed-mixtral", "testbed-shared")


def _agree(r: dict) -> float:
    return r["metrics"]["routing"]["mean_topk_agreement"]


def test_w8_keeps_routing_and_w2_damages_accuracy_and_routing(testbed_ctx):
    w8 = run_on_testbed(testbed_ctx, "testbed-mixtral", weights={"bits": 8, "group_size": None}, techniques=["rtn"])
    w2 = run_on_testbed(testbed_ctx, "testbed-mixtral", weights={"bits": 2, "group_size": None}, techniques=["rtn"])
    assert _agree(w8) >= 0.99
    assert w2["metrics"]["avg_accuracy"] < w2["metrics"]["fp_avg_accuracy"] - 0.2
    assert _agree(w2) < _agree(w8) - 0.05


@pytest.mark.parametrize("model", TESTBEDS)
@pytest.mark.parametrize("bits, group", [(3, None), (3, 32), (4, None), (4, 32)])
def test_gptq_halves_kl_of_rtn_without_hurting_routing(testbed_ctx, model, bits, group):
    w = {"bits": bits, "group_size": group}
    rtn = run_on_testbed(testbed_ctx, model, weights=w, techniques=["rtn"])
    gptq = run_on_testbed(testbed_ctx, model, weights=w, techniques=["gptq"])
    assert gptq["metrics"]["kl"] * 2 <= rtn["metrics"]["kl"]
    assert _agree(gptq) >= _agree(rtn) - 0.005
    tokens = gptq["calibration"]["tokens_per_expert"]
    fallbacks = {(f["layer"], f["expert"]) for f in gptq["calibration"]["fallbacks"]}
    for layer, counts in tokens.items():  # every expert calibrated or listed as a fallback
        for e, c in counts.items():
            assert c >= 16 or (int(layer), int(e)) in fallbacks


def test_gptq_results_are_reproducible_with_the_same_seed(testbed_ctx):
    a = run_on_testbed(testbed_ctx, "testbed-shared", weights={"bits": 3, "group_size": 32}, techniques=["gptq"])
    b = run_on_testbed(testbed_ctx, "testbed-shared", weights={"bits": 3, "group_size": 32}, techniques=["gptq"])
    assert a["metrics"]["kl"] == b["metrics"]["kl"] and a["bits"] == b["bits"]


def test_router_norm_mixed_precision_beats_uniform_two_bit_for_a_quarter_bit(testbed_ctx):
    """ALGORITHMS.md: router-norm allocation → accuracy vs uniform at (nearly) equal average bits.
    The paper's stronger claim — better than a random allocation with the same tier counts — does
    not hold on this testbed (benchmarks/RESULTS.md), so it is reported there, not asserted here."""
    w = {"bits": 2, "group_size": None}
    uniform = run_on_testbed(testbed_ctx, "testbed-mixtral", weights=w, techniques=["gptq"])
    mixed = run_on_testbed(testbed_ctx, "testbed-mixtral", weights=w, techniques=["gptq"],
                           allocation={"method": "router_norm", "avg_bits": 2.25, "tiers": [2, 3]})
    expert_bits = [b for layer in mixed["bits"]["experts"].values() for b in layer.values()]
    assert sum(expert_bits) / len(expert_bits) == 2.25 and set(expert_bits) == {2, 3}
    assert mixed["metrics"]["kl"] < 0.7 * uniform["metrics"]["kl"]
    assert mixed["metrics"]["avg_accuracy"] > uniform["metrics"]["avg_accuracy"]
