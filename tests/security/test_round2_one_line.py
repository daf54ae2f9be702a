"""Round 2, the small ones: every error through the one-line path. A 5000-digit seed (in JSON text, in
a recipe dict, in the Launch form) used to surface Python's own "Exceeds the limit (4300 digits)" or
OverflowError text; the Launch form answered a MoQE `run:<id>` variant with "unknown word" instead of
what admission says about the run."""

from __future__ import annotations

import pytest

from moeq.app.form_check import read_form, recipe_errors
from moeq.app.recipe_form import LaunchForm, form_to_recipe
from moeq.contract.errors import MoeqError, RecipeError
from moeq.jobs.admission import admit

BASE = {"model": "tiny-mixtral", "weights": {"bits": 4, "group_size": 16}, "techniques": ["rtn"]}
PYTHON_TEXT = ("4300", "set_int_max_str_digits", "OverflowError", "convert", "Traceback")

RECIPES = {
    "5000-digit seed in JSON text": '{"model": "tiny-mixtral", "seed": ' + "9" * 5000 + "}",
    "5000-digit seed in a dict": {**BASE, "seed": 10**5000},
}


@pytest.mark.parametrize("name", list(RECIPES))
def test_absurd_numbers_are_one_line_without_python_text(team, name):
    settings, store = team
    with pytest.raises(MoeqError) as err:
        admit(settings, store, RECIPES[name], ("p1",))
    text = str(err.value)
    assert text.startswith("recipe.") and "\n" not in text and len(text) < 300, text
    assert not any(p in text for p in PYTHON_TEXT), text


@pytest.mark.parametrize("seed", ["9" * 5000, 10**5000, float("inf"), 1e300],
                         ids=["5000-digit text", "5000-digit int", "inf", "1e300"])
def test_the_launch_form_reports_a_huge_seed_in_its_own_words(seed):
    form, errors = read_form(LaunchForm(model="tiny-mixtral", seed=seed))
    errors += recipe_errors(form_to_recipe(form))
    assert len(errors) == 1 and errors[0].startswith("seed: ") and len(errors[0]) < 200, errors
    assert not any(p in errors[0] for p in PYTHON_TEXT), errors


def test_the_launch_form_takes_a_moqe_run_variant_and_shows_admissions_answer(team):
    settings, store = team
    recipe = form_to_recipe(LaunchForm(model="tiny-mixtral", moqe_variants="run:0123abcd; gptq"))
    assert recipe["moqe"]["variants"][0] == "run:0123abcd"
    assert recipe_errors(recipe) == []  # the form's own check has nothing against it ...
    with pytest.raises(RecipeError, match=r"moqe.variants\[0\]: .*matches no run"):
        admit(settings, store, recipe, ("p1",))  # ... and Launch shows admission's line about the run
