"""The Launch tab's one check (no browser): Launch is possible only when the JSON parses, every form field
reads, and the form describes the same recipe as the JSON; "✓ recipe is valid" only then."""

from __future__ import annotations

import json

from moeq.app.form_check import problems_markdown
from moeq.app.launch_check import check_launch
from moeq.app.recipe_fill import apply_overrides, form_values, recipe_to_form
from moeq.app.recipe_form import LaunchForm, form_to_recipe

FORM = LaunchForm(model="testbed-mixtral", group_size="32", techniques=["gptq"])


def _values(**kw) -> list:
    return form_values(LaunchForm(**{**FORM.__dict__, **kw}))


def test_the_form_and_its_json_launch():
    text = json.dumps(form_to_recipe(FORM))
    check = check_launch(text, _values(), {}, ())
    assert check.launchable and check.recipe["weights"]["group_size"] == 32


def test_an_unreadable_field_is_not_launchable_even_with_good_json():
    text = json.dumps(form_to_recipe(FORM))  # the JSON still says 32 (the stale recipe of the issue)
    check = check_launch(text, _values(group_size="abc"), {}, ())
    assert not check.launchable and any("group size" in p for p in check.problems)
    assert "✓" not in problems_markdown(check.problems)


def test_form_and_json_that_differ_are_not_launchable():
    text = json.dumps(form_to_recipe(FORM))
    check = check_launch(text, _values(weight_bits=3), {}, ())
    assert not check.launchable and any("weights.bits: form 3, JSON 4" in p for p in check.problems)


def test_invalid_json_is_not_launchable():
    check = check_launch('{"model": "testbed-mixtral", ', _values(), {}, ())
    assert not check.launchable and any("not valid JSON" in p for p in check.problems)


def test_json_the_form_cannot_show_round_trips_as_kept_values():
    recipe = {"model": "testbed-mixtral", "weights": {"bits": 3, "group_size": 64}, "techniques": ["rtn"],
              "eval": {"tasks": ["testbed"], "limit": 8, "ppl_windows": 4}}
    form, kept = recipe_to_form(recipe)
    assert form.weight_bits == 3 and form.group_size == "64" and "eval.ppl_windows" in kept
    check = check_launch(json.dumps(recipe), form_values(form), kept, ())
    assert check.launchable, check.problems
    assert apply_overrides(form_to_recipe(form), kept)["eval"]["ppl_windows"] == 4
