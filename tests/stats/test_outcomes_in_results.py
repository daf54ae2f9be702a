"""Per-item and per-window outcomes of a real run agree with the run's own aggregate figures: the mean
of a task's item scores is its accuracy, exp of the mean window NLL its perplexity, the token-weighted
mean of the window KLs its KL; ids are content ids, the same in a run with another seed."""

from __future__ import annotations

import math

import pytest

from moeq.quant_core.api import run
from moeq.quant_core.context import RunContext

RECIPE = {"model": "tiny-mixtral", "weights": {"bits": 4, "group_size": 16}, "techniques": ["gptq"],
          "calibration": {"source": "random", "samples": 4, "seq_len": 32},
          "eval": {"source": "random", "tasks": ["testbed"], "limit": 6, "ppl_windows": 5, "seq_len": 32,
                   "kl_tokens": 100}}


def test_outcomes_agree_with_the_aggregates_and_do_not_depend_on_the_seed(tiny_zoo, tmp_path):
    ctx = RunContext(zoo_dir=tiny_zoo, cache_dir=tmp_path / "cache")
    a, b = run(RECIPE, ctx), run({**RECIPE, "seed": 7}, ctx)
    for t in a["tasks"]:
        assert len(t["item_ids"]) == t["n"] == 6
        assert sum(t["item_scores"]) / t["n"] == pytest.approx(t["acc"])
    w = a["windows"]
    assert len(w["ids"]) == len(w["nll"]) == 5 and w["tokens"] == 31
    assert math.exp(sum(w["nll"]) / 5) == pytest.approx(a["metrics"]["perplexity"], rel=1e-5)
    # 100 KL positions: three whole windows of 31 and 7 positions of the fourth
    assert len(w["kl"]) == 4
    weighted = (sum(w["kl"][:3]) * 31 + w["kl"][3] * 7) / 100
    assert weighted == pytest.approx(a["metrics"]["kl"], rel=1e-4)
    assert [t["item_ids"] for t in a["tasks"]] == [t["item_ids"] for t in b["tasks"]]
    assert a["windows"]["ids"] == b["windows"]["ids"] and a["recipe"]["seed"] == 0 and b["recipe"]["seed"] == 7
