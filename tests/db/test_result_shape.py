"""Results stored in the earlier shape (per-expert facts in bits.experts, calibration.tokens_per_expert
and calibration.fallbacks as well as in expert_stats) read back in the current one."""

from __future__ import annotations

import copy

from moeq.db.repository.result_shape import fallback_rows, normalize_result

OLD = {
    "bits": {"avg_weight_bits": 3.0, "bits_per_param_with_overhead": 3.5, "experts": {"0": {"0": 2, "1": 4}}},
    "calibration": {"num_sequences": 4, "tokens_per_expert": {"0": {"0": 3, "1": 40}},
                    "fallbacks": [{"layer": 0, "expert": 0, "tokens": 3, "reason": "3 routed calibration tokens "
                                   "< min_tokens 16", "fallback": "rtn"}]},
    "expert_stats": [{"layer": 0, "expert": 0, "bits": 2, "group_size": 16, "calib_tokens": 3, "weight_error": 0.2,
                      "fallback": "rtn"},
                     {"layer": 0, "expert": 1, "bits": 4, "group_size": 16, "calib_tokens": 40, "weight_error": 0.05,
                      "fallback": None}],
}


def test_an_old_result_keeps_each_per_expert_fact_once_in_expert_stats():
    before = copy.deepcopy(OLD)
    new = normalize_result(OLD)
    assert OLD == before  # the stored dict is not changed in place
    assert new["bits"] == {"avg_weight_bits": 3.0, "bits_per_param_with_overhead": 3.5}
    assert new["calibration"] == {"num_sequences": 4}
    assert [(r["bits"], r["calib_tokens"], r["fallback"]) for r in new["expert_stats"]] == [(2, 3, "rtn"), (4, 40, None)]
    assert new["expert_stats"][0]["fallback_reason"] == "3 routed calibration tokens < min_tokens 16"
    assert [(r["layer"], r["expert"]) for r in fallback_rows(new)] == [(0, 0)]
    assert normalize_result(new) == new  # the current shape is left as it is


def test_a_result_without_expert_stats_gets_them_from_the_old_maps():
    old = {k: v for k, v in copy.deepcopy(OLD).items() if k != "expert_stats"}
    rows = normalize_result(old)["expert_stats"]
    assert [(r["layer"], r["expert"], r["bits"], r["calib_tokens"], r["fallback"]) for r in rows] == [
        (0, 0, 2, 3, "rtn"), (0, 1, 4, 40, None)]


def test_an_old_moqe_result_reads_with_empty_expert_stats():
    old = {"bits": {"avg_weight_bits": 3.0, "experts": {}}, "moqe": {"stored_weight_bits": 6.0},
           "calibration": {"tokens_per_expert": {}, "fallbacks": [], "num_sequences": 8}}
    new = normalize_result(old)
    assert new["expert_stats"] == [] and new["bits"] == {"avg_weight_bits": 3.0} and new["moqe"] == old["moqe"]
