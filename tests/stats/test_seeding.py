"""The run's seed offsets every component seed of its recipe (moeq.contract.seeding); seed 0 draws what it did."""

from __future__ import annotations

from moeq.contract.recipe import parse_recipe
from moeq.contract.seeding import with_run_seed


def _recipe(seed):
    return parse_recipe({"model": "tiny-mixtral", "techniques": [{"name": "rotation", "seed": 5}, "gptq"],
                         "allocation": {"method": "random", "seed": 2}, "seed": seed})


def test_component_seeds_follow_the_run_seed():
    drawn = with_run_seed(_recipe(3))
    assert drawn.techniques[0].seed == 8 and drawn.allocation.seed == 5 and drawn.seed == 3
    assert drawn.techniques[1] == _recipe(3).techniques[1]  # GPTQ has no seed of its own
    assert with_run_seed(_recipe(0)) == _recipe(0)
    assert with_run_seed(_recipe(2**32 - 1)).techniques[0].seed == 4  # wraps within the seed range
