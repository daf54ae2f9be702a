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
    for row in gptq["expert_stats"]:  # every expert calibrated or marked as a fallback
        assert row["calib_tokens"] >= 16 or row["fallback"] is not None


def test_gptq_results_are_reproducible_with_the_same_seed(testbed_ctx):
    a = run_on_testbed(testbed_ctx, "testbed-shared", weights={"bits": 3, "group_size": 32}, techniques=["gptq"])
    b = run_on_testbed(testbed_ctx, "testbed-shared", weights={"bits": 3, "group_size": 32}, techniques=["gptq"])
    assert a["metrics"]["kl"] == b["metrics"]["kl"] and a["bits"] == b["bits"]
    assert a["expert_stats"] == b["expert_stats"]


def test_at_equal_all_weights_bits_the_authors_uniform_baseline_beats_router_norm_on_experts(testbed_ctx):
    """Mixed precision compared at equal average bits over *all* quantized weights (< 0.05 apart).
    On testbed-mixtral experts are 8/9 of the quantized weights, so router-norm 2.25 bits over
    {2, 3} on the experts with 2-bit non-expert weights and the authors' uniform baseline (experts
    2-bit, non-expert 4-bit) both average 2.222 bits. The benchmark (benchmarks/RESULTS.md, 64
    calibration sequences) measured KL 0.0180 for router-norm against 0.0081 for the baseline, and
    router-norm within about one standard deviation of a random allocation with the same tiers (5
    seeds) — so what is asserted is the baseline's win, at equal bits."""
    w = {"bits": 2, "group_size": None}
    uniform = run_on_testbed(testbed_ctx, "testbed-mixtral", weights=w, techniques=["gptq"],
                             allocation={"method": "uniform", "other_bits": 4})
    mixed = run_on_testbed(testbed_ctx, "testbed-mixtral", weights=w, techniques=["gptq"],
                           allocation={"method": "router_norm", "avg_bits": 2.25, "tiers": [2, 3], "other_bits": 2})
    expert_bits = [row["bits"] for row in mixed["expert_stats"]]
    assert sum(expert_bits) / len(expert_bits) == 2.25 and set(expert_bits) == {2, 3}
    assert mixed["bits"]["avg_expert_bits"] == 2.25 and uniform["bits"]["avg_expert_bits"] == 2.0
    assert abs(mixed["bits"]["avg_weight_bits"] - uniform["bits"]["avg_weight_bits"]) < 0.05
    assert uniform["metrics"]["kl"] < mixed["metrics"]["kl"]


def test_moqe_mixture_routes_between_variants_when_inputs_say_which_wins(testbed_ctx, tmp_path):
    """MoQE on single-domain windows (the input tells the router which variant wins): the routed
    mixture lies between the oracle and the average single variant, and it routes rather than
    always picking one variant. The stronger claim (the mixture beats its *best* single variant on
    held-out perplexity) was asserted here before the router's initial weights were seeded; with
    them seeded it holds for 1 of 3 seeds (mixture 2.00563 / 2.00492 / 2.00624 vs best 2.00498,
    oracle 1.99571, benchmarks/RESULTS.md MoQE section), so it is reported there, not asserted."""
    from moeq.quant_core.zoo.corpus import domain_blocks

    train, held = tmp_path / "train.txt", tmp_path / "heldout.txt"
    # 65 blocks cover the variants' 32 × 255 calibration tokens; the router trains on the 256 after them
    train.write_text(domain_blocks(1, 256 + 65, 127, "calib"))
    held.write_text(domain_blocks(2, 128, 127, "heldout"))
    w = {"bits": 2, "group_size": None}
    result = run_on_testbed(
        testbed_ctx, "testbed-mixtral", calibration={"source": f"file:{train}"},
        eval={"source": f"file:{held}", "tasks": [], "seq_len": 128},
        moqe={"variants": [{"weights": w, "techniques": ["gptq"]},
                           {"weights": w, "techniques": ["rotation", "gptq"]},
                           {"weights": {**w, "symmetric": False}, "techniques": [{"name": "rtn", "clip_search": True}]}],
              "train_samples": 256, "eval_samples": 128, "epochs": 30})
    q = result["moqe"]
    ppl = [v["perplexity"] for v in q["variants"]]
    assert q["oracle"]["perplexity"] <= result["metrics"]["perplexity"] < sum(ppl) / len(ppl), (q, ppl)
    assert max(q["usage"]) < 0.9  # it routes, rather than always picking one variant
