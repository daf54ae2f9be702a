"""Admission names every width a group size does not divide (MLA's kv_b_proj included) and the group
sizes that fit all of them, in CLI spelling; an lm_eval: task without lm-evaluation-harness installed
is refused before queueing with what to install."""

from __future__ import annotations

import pytest

from moeq.contract.errors import RecipeError
from moeq.contract.group_fit import fitting_groups, group_problem, input_widths
from moeq.contract.recipe import parse_recipe
from moeq.jobs.admission import check_eval_dependencies

DEEPSEEK_V2 = {"hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 48, "kv_lora_rank": 32,
               "q_lora_rank": None, "num_attention_heads": 4, "v_head_dim": 16, "head_dim": 8}
QWEN3_MOE = {"hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 48, "num_attention_heads": 4,
             "head_dim": 32}


def test_mla_low_rank_widths_count():
    widths = input_widths(DEEPSEEK_V2)
    assert widths["kv_lora_rank (kv_b_proj)"] == 32 and widths["heads × v_head_dim (o_proj)"] == 64
    assert fitting_groups(DEEPSEEK_V2) == ["16", "8", "channel"]


def test_one_line_names_every_misfit_and_what_fits():
    line = group_problem(QWEN3_MOE, 32, "tiny-qwen3_moe")
    assert "moe_intermediate_size = 48" in line and "heads × head_dim (o_proj) = 128" not in line
    assert line.endswith("group sizes that fit every width: 16, 8, channel")
    assert "null" not in line
    assert group_problem(QWEN3_MOE, 16, "m") is None and group_problem(QWEN3_MOE, None, "m") is None


def test_missing_lm_eval_is_refused_with_what_to_install():
    recipe = parse_recipe({"model": "m", "eval": {"tasks": ["testbed", "lm_eval:arc_easy"]}})
    with pytest.raises(RecipeError, match=r"lm_eval:arc_easy .*pip install 'moeq\[lmeval\]'"):
        check_eval_dependencies(recipe, have=lambda name: None)
    check_eval_dependencies(recipe, have=lambda name: object())  # installed: fine
    check_eval_dependencies(parse_recipe({"model": "m"}), have=lambda name: None)  # not needed: fine
