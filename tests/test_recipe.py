"""Recipe contract (DESIGN §4.2): valid recipes parse; impossible values are rejected naming the key."""

from __future__ import annotations

import json

import pytest

from moeq.contract.errors import RecipeError
from moeq.contract.recipe import parse_bits, parse_recipe, recipe_summary
from moeq.contract.techniques import GptqConfig, RotationConfig, RtnConfig


def test_design_example_recipe_parses_and_round_trips():
    data = {
        "model": "testbed-mixtral",
        "weights": {"bits": 4, "group_size": 128, "symmetric": True},
        "activations": {"bits": 16},
        "router": "fp",
        "calibration": {"source": "testbed", "samples": 128, "seq_len": 512, "sampler": "uniform", "balance": None},
        "techniques": [{"name": "rotation"}, {"name": "smooth", "aggregate": "expert"},
                       {"name": "gptq", "affinity": True}],
        "allocation": {"method": "router_norm", "avg_bits": 2.5, "tiers": [2, 3, 4]},
        "eval": {"perplexity": True, "tasks": ["testbed"], "routing": True, "limit": None},
        "seed": 0,
    }
    r = parse_recipe(data)
    assert isinstance(r.techniques[0], RotationConfig)
    assert isinstance(r.weight_quantizer, GptqConfig) and r.weight_quantizer.affinity
    again = parse_recipe(json.loads(json.dumps(r.to_dict())))
    assert again == r


def test_techniques_are_put_in_execution_order_and_rtn_is_default():
    r = parse_recipe({"techniques": ["gptq", "rotation"]})
    assert [type(t) for t in r.techniques] == [RotationConfig, GptqConfig]
    assert isinstance(parse_recipe({}).weight_quantizer, RtnConfig)
    assert "rtn" in recipe_summary(parse_recipe({}))


@pytest.mark.parametrize("bad, key", [
    ({"weights": {"bits": 5}}, "weights.bits"),
    ({"weights": {"group_size": 0}}, "weights.group_size"),
    ({"unknown": 1}, "unknown"),
    ({"techniques": [{"name": "gptq", "damp": 2.0}]}, "techniques[0].damp"),
    ({"techniques": [{"name": "gptq", "bogus": 1}]}, "techniques[0].bogus"),
    ({"techniques": ["magic"]}, "techniques[0].name"),
    ({"techniques": ["rtn", "gptq"]}, "techniques"),
    ({"allocation": {"avg_bits": 5, "tiers": [2, 4]}}, "allocation.avg_bits"),
    ({"allocation": {"avg_bits": 3, "tiers": [4, 2]}}, "allocation.tiers"),
    ({"calibration": {"samples": 0}}, "calibration.samples"),
    ({"router": "sometimes"}, "router.mode"),
    ({"activations": {"bits": 6}}, "activations.bits"),
])
def test_impossible_values_name_the_key(bad, key):
    with pytest.raises(RecipeError) as err:
        parse_recipe(bad)
    assert err.value.key == key
    assert str(err.value).startswith(f"recipe.{key}:")


def test_malformed_and_oversized_json_are_rejected():
    with pytest.raises(RecipeError, match="not valid JSON"):
        parse_recipe("{not json")
    with pytest.raises(RecipeError, match="larger than"):
        parse_recipe("[" + " " * 70_000 + "]")


def test_bits_shorthand():
    assert parse_bits("W4A16") == {"weights": {"bits": 4}, "activations": {"bits": 16}}
    assert parse_bits("w3a4g32")["weights"] == {"bits": 3, "group_size": 32}
    assert parse_bits("W4A8g-1")["weights"]["group_size"] is None
    with pytest.raises(RecipeError):
        parse_bits("4-bit")


def test_moqe_variants_are_checked_when_the_recipe_is_parsed():
    ok = {"weights": {"bits": 3}, "techniques": ["gptq"]}
    parsed = parse_recipe({"model": "m", "calibration": {"samples": 8}, "moqe": {"variants": [ok, "path:/saved"]}})
    assert "MoQE[W3A16 g128 gptq router=fp | path:/saved]" == recipe_summary(parsed)
    with pytest.raises(RecipeError, match=r"moqe.variants\[1\]: must be a recipe object or 'path:"):
        parse_recipe({"model": "m", "moqe": {"variants": [ok, "/saved"]}})
    with pytest.raises(RecipeError, match=r"moqe.variants\[0\]: a variant takes the run's model"):
        parse_recipe({"model": "m", "moqe": {"variants": [{**ok, "model": "other"}, ok]}})


def test_a_preset_inside_a_recipe_says_it_is_a_preset():
    """Not 'unknown technique 'moequant' — did you mean 'moequant'?' (the fourth attack run's note)."""
    from moeq.contract.errors import RecipeError
    from moeq.contract.recipe import parse_recipe

    for item in ("moequant", {"name": "moequant", "clip": True}):
        with pytest.raises(RecipeError) as err:
            parse_recipe({"model": "m", "techniques": [item]})
        assert "is a preset, not a technique" in str(err.value) and "did you mean" not in str(err.value)
