"""On the trained testbed: the seed changes calibration, never what a run is evaluated on; two runs of
one recipe with different seeds are within noise, W2 against W4 is not (paired over the same items and
windows, moeq.contract.stats). The configuration is the one docs/results.md reports."""

from __future__ import annotations

import pytest

from moeq.contract.stats import paired_differences
from tests.conftest import run_on_testbed

pytestmark = pytest.mark.slow

EVAL = {"tasks": ["testbed"], "limit": 50, "ppl_windows": 8, "seq_len": 256, "kl_tokens": 2048}


def _run(ctx, bits: int, seed: int) -> dict:
    return run_on_testbed(ctx, "testbed-mixtral", weights={"bits": bits, "group_size": 64}, techniques=["gptq"],
                          seed=seed, eval=EVAL)


def test_seeds_are_within_noise_and_w2_against_w4_is_not(testbed_ctx):
    w4_0, w4_1, w2_0 = _run(testbed_ctx, 4, 0), _run(testbed_ctx, 4, 1), _run(testbed_ctx, 2, 0)
    # same evaluation items and windows whatever the seed; different calibration (the quantized models differ)
    assert [t["item_ids"] for t in w4_0["tasks"]] == [t["item_ids"] for t in w4_1["tasks"]]
    assert w4_0["windows"]["ids"] == w4_1["windows"]["ids"] and len(w4_0["windows"]["ids"]) == 8
    assert w4_0["windows"]["nll"] != w4_1["windows"]["nll"]

    seeds = paired_differences(w4_0, w4_1)
    for key in ("avg_accuracy", "perplexity", "kl"):
        assert seeds[key]["paired"] and seeds[key]["within_noise"], (key, seeds[key])
    assert seeds["avg_accuracy"]["n"] == 500

    bits = paired_differences(w4_0, w2_0)
    for key in ("avg_accuracy", "perplexity", "kl"):
        assert bits[key]["paired"] and not bits[key]["within_noise"], (key, bits[key])
    assert bits["avg_accuracy"]["delta"] < 0 < bits["kl"]["delta"]
