"""moeq.contract.stats against independent computations on fixed items: scipy's exact binomial test
for McNemar, a hand-written bootstrap with the documented RNG for the intervals."""

from __future__ import annotations

import math
import random

import pytest
from scipy.stats import binomtest

from moeq.contract.stats import BOOTSTRAP_RESAMPLES, paired_differences, spread, without_seeds

# 40 fixed items: A right on 30, B right on 22; discordant: A-only 12, B-only 4
A = [1] * 30 + [0] * 10
B = [1] * 18 + [0] * 12 + [1] * 4 + [0] * 6
IDS = [f"i{k}" for k in range(40)]


def _task(name, ids, scores):
    return {"name": name, "kind": "mc", "acc": sum(scores) / len(scores), "item_ids": ids, "item_scores": scores}


def _hand_bootstrap(d, key):
    rng = random.Random(f"0:{key}")
    n = len(d)
    means = []
    for _ in range(2000):
        total = 0.0
        for _ in range(n):
            total += d[math.floor(rng.random() * n)]
        means.append(total / n)
    means.sort()
    return means[50], means[1949], means


def test_mcnemar_and_bootstrap_equal_independent_computations():
    out = paired_differences({"tasks": [_task("t", IDS, A)]}, {"tasks": [_task("t", IDS, B)]})
    row = out["tasks"][0]
    assert BOOTSTRAP_RESAMPLES == 2000 and out["resamples"] == 2000
    assert row["paired"] and row["n"] == 40 and tuple(row["discordant"]) == (12, 4)
    assert row["mcnemar_p"] == pytest.approx(binomtest(12, 16, 0.5).pvalue, rel=1e-12)
    assert row["delta"] == pytest.approx(22 / 40 - 30 / 40)
    low, high, _ = _hand_bootstrap([b - a for a, b in zip(A, B)], "t")
    assert (row["low"], row["high"]) == pytest.approx((low, high), abs=1e-12)
    assert row["within_noise"] is (low <= 0 <= high)
    assert row["high"] < 0 and not row["within_noise"]  # 12 vs 4 discordant: a real drop


def test_only_common_items_are_paired_in_any_order():
    ids_b = list(reversed(IDS[5:])) + ["other1", "other2"]
    b_scores = list(reversed(B[5:])) + [1, 0]
    out = paired_differences({"tasks": [_task("t", IDS, A)]}, {"tasks": [_task("t", ids_b, b_scores)]})
    row = out["tasks"][0]
    assert row["n"] == 35
    d = [b - a for a, b in zip(A[5:], B[5:])]
    low, high, _ = _hand_bootstrap(d, "t")
    assert (row["low"], row["high"]) == pytest.approx((low, high), abs=1e-12)
    disc = (sum(1 for a, b in zip(A[5:], B[5:]) if a > b), sum(1 for a, b in zip(A[5:], B[5:]) if b > a))
    assert row["mcnemar_p"] == pytest.approx(binomtest(disc[1], sum(disc), 0.5).pvalue, rel=1e-12)


def test_average_accuracy_uses_the_same_resamples_per_task():
    a = {"tasks": [_task("t1", IDS, A), _task("t2", IDS[:20], A[10:30])]}
    b = {"tasks": [_task("t1", IDS, B), _task("t2", IDS[:20], B[10:30])]}
    out = paired_differences(a, b)
    _, _, m1 = _hand_bootstrap([y - x for x, y in zip(A, B)], "t1")
    rng = random.Random("0:t2")
    d2 = [y - x for x, y in zip(A[10:30], B[10:30])]
    m2 = [sum(d2[math.floor(rng.random() * 20)] for _ in range(20)) / 20 for _ in range(2000)]
    # m1 came back sorted: recompute unsorted for the per-resample average
    rng = random.Random("0:t1")
    d1 = [y - x for x, y in zip(A, B)]
    m1 = [sum(d1[math.floor(rng.random() * 40)] for _ in range(40)) / 40 for _ in range(2000)]
    avg = sorted((x + y) / 2 for x, y in zip(m1, m2))
    assert (out["avg_accuracy"]["low"], out["avg_accuracy"]["high"]) == pytest.approx((avg[50], avg[1949]))


def test_windows_pair_perplexity_and_kl():
    rng = random.Random(7)
    nll_a = [2.0 + rng.random() for _ in range(16)]
    nll_b = [v + 0.05 + 0.01 * rng.random() for v in nll_a]
    kl_a, kl_b = [0.01] * 8, [0.02] * 8
    ids = [f"w{k}" for k in range(16)]
    out = paired_differences({"windows": {"ids": ids, "nll": nll_a, "kl": kl_a, "tokens": 255}},
                             {"windows": {"ids": ids, "nll": nll_b, "kl": kl_b, "tokens": 255}})
    ppl = out["perplexity"]
    assert ppl["delta"] == pytest.approx(math.exp(sum(nll_b) / 16) - math.exp(sum(nll_a) / 16))
    r = random.Random("0:perplexity")
    stats = []
    for _ in range(2000):
        idx = [math.floor(r.random() * 16) for _ in range(16)]
        stats.append(math.exp(sum(nll_b[k] for k in idx) / 16) - math.exp(sum(nll_a[k] for k in idx) / 16))
    stats.sort()
    assert (ppl["low"], ppl["high"]) == pytest.approx((stats[50], stats[1949]))
    assert ppl["low"] > 0 and not ppl["within_noise"]
    assert out["kl"]["n"] == 8 and out["kl"]["delta"] == pytest.approx(0.01)


def test_different_items_or_no_outcomes_are_not_paired_and_say_why():
    out = paired_differences({"tasks": [_task("t", IDS, A)], "windows": {"ids": ["x"], "nll": [1.0], "kl": [],
                                                                         "tokens": 255}},
                             {"tasks": [_task("t", [f"j{k}" for k in range(40)], B)],
                              "windows": {"ids": ["y"], "nll": [1.0], "kl": [], "tokens": 255}})
    assert not out["tasks"][0]["paired"] and "different items" in out["tasks"][0]["reason"]
    assert out["tasks"][0]["within_noise"] is None
    assert "different windows" in out["perplexity"]["reason"]
    old = paired_differences({"tasks": [{"name": "t", "acc": 0.5}]}, {"tasks": [_task("t", IDS, B)]})
    assert "no per-item outcomes" in old["tasks"][0]["reason"]
    assert not old["avg_accuracy"]["paired"]


def test_identical_outcomes_are_within_noise_with_p_one():
    out = paired_differences({"tasks": [_task("t", IDS, A)]}, {"tasks": [_task("t", IDS, A)]})
    row = out["tasks"][0]
    assert row["delta"] == 0 and row["mcnemar_p"] == 1.0 and row["within_noise"]


def test_spread_and_seed_free_recipe():
    s = spread([0.5, 0.7, None, 0.6])
    assert s.n == 3 and s.mean == pytest.approx(0.6) and s.sd == pytest.approx(0.1)
    assert s.text() == "0.600 ± 0.100 (n=3)"
    assert spread([]).text() == "-"
    assert without_seeds({"seed": 3, "a": [{"seed": 1, "b": 2}]}) == {"a": [{"b": 2}]}
