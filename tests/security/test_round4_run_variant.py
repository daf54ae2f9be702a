"""Round 4 (extra): README says MoQE saved-model variants come from `run:<id>`; admission resolves
them, but the Launch page's JSON editor parsed the recipe before that and said "not a valid recipe".
The page now takes such a recipe and keeps the variant as written."""

from __future__ import annotations

from moeq.app.recipe_fill import recipe_to_form

README_RECIPE = {"model": "testbed-tiny", "weights": {"bits": 4}, "techniques": ["rtn"],
                 "moqe": {"variants": ["run:abcd1234", {"weights": {"bits": 3}}]}}


def test_a_run_variant_recipe_fills_the_form():
    form, overrides = recipe_to_form(README_RECIPE)
    assert form.model == "testbed-tiny" and form.weight_bits == 4
    assert overrides["moqe"]["variants"][0] == "run:abcd1234"
    assert overrides["moqe"]["variants"][1]["weights"]["bits"] == 3


def test_a_saved_model_outside_the_roots_names_the_setting(tmp_path):
    import pytest

    from moeq.contract.errors import RecipeError
    from moeq.contract.sources import confine

    with pytest.raises(RecipeError) as err:
        confine(str(tmp_path), (tmp_path / "models",), "moqe.variants[0]", "saved model", want_dir=True)
    assert str(err.value).endswith("the operator sets them with MOEQ_MODEL_ROOTS; "
                                   "a run's saved model is named run:<id>)"), str(err.value)
