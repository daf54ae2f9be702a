"""The worker's own group-size check (a run queued before its model was installed) names every width the
group size does not divide and the sizes that fit, not one dimension per attempt."""

from __future__ import annotations

import pytest

from moeq.contract.errors import RecipeError


def test_every_misfit_and_what_fits_in_one_line(tmp_path):
    from transformers import AutoModelForCausalLM

    from moeq.contract.recipe import parse_recipe
    from moeq.quant_core.adapters.model import MoEModel
    from moeq.quant_core.validate import validate_for_model
    from moeq.quant_core.zoo.build import ensure_built

    path = ensure_built("tiny-deepseek_v2", tmp_path)
    moe = MoEModel(AutoModelForCausalLM.from_pretrained(path).eval())
    recipe = parse_recipe({"model": "tiny-deepseek_v2", "weights": {"bits": 4, "group_size": 64}})
    with pytest.raises(RecipeError) as err:
        validate_for_model(recipe, moe)
    msg = str(err.value)
    assert "\n" not in msg and "48 of layer 1 experts down" in msg and "kv_b_proj" in msg
    assert msg.endswith("group sizes that fit every width: 16, 8, channel")
