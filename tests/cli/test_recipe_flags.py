"""`moeq run` flags for the common recipe parts (mixed precision, calibration, evaluation), every problem
reported at once, "did you mean" for names and the presets in the unknown-technique message."""

from __future__ import annotations

from moeq.app.cli import build_parser, main
from moeq.app.commands.run import build_recipe_dict
from moeq.contract.recipe import parse_recipe


def test_flags_fill_the_common_recipe_parts():
    args = build_parser().parse_args([
        "run", "--model", "tiny-mixtral", "--bits", "W3A16", "--allocation", "router_norm", "--avg-bits", "3",
        "--tiers", "2,4", "--calib-source", "random", "--samples", "16", "--sampler", "uniform",
        "--tasks", "testbed,lm_eval:arc_easy", "--eval-limit", "8", "--seed", "3"])
    recipe = parse_recipe(build_recipe_dict(args))
    assert (recipe.allocation.method, recipe.allocation.avg_bits, recipe.allocation.tiers) == ("router_norm", 3.0,
                                                                                               (2, 4))
    assert (recipe.calibration.source, recipe.calibration.samples, recipe.calibration.sampler) == ("random", 16,
                                                                                                    "uniform")
    assert recipe.eval.tasks == ("testbed", "lm_eval:arc_easy") and recipe.eval.limit == 8 and recipe.seed == 3


def test_every_problem_at_once_with_did_you_mean(moeq_home, capsys):
    rc = main(["run", "--model", "tiny-mixtral", "--bits", "W5A16", "--techniques", "gtpq", "--group-size", "abc"])
    err = capsys.readouterr().err
    assert rc == 2 and "3 problems" in err
    assert "weights.bits" in err and "weights.group_size" in err and "did you mean 'gptq'" in err
    assert "presets: " in err and "eaquant" in err
    assert main(["run", "--model", "tiny-mixtrl"]) == 2
    assert "did you mean 'tiny-mixtral'" in capsys.readouterr().err


def test_group_size_is_checked_against_every_width_before_a_run_is_recorded(moeq_home, capsys):
    """tiny-deepseek_v2 (installed by this first run before admission): 64 divides neither the experts'
    48 nor kv_b_proj's kv_lora_rank 32; one line says so and which group sizes fit, and no run exists."""
    assert main(["run", "--model", "tiny-deepseek_v2", "--bits", "W4A16", "--group-size", "64"]) == 2
    err = capsys.readouterr().err
    assert "moe_intermediate_size = 48" in err and "kv_lora_rank (kv_b_proj) = 32" in err
    assert "group sizes that fit every width: 16, 8, channel" in err and "null" not in err
    assert main(["runs", "list"]) == 0
    assert "(0 of 0)" in capsys.readouterr().out
