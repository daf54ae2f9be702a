"""One source of truth for a launch: the recipe JSON the page shows, checked against the form beside it.

The Launch tab shows two views of one recipe: the form and the recipe JSON. Launch queues the JSON
only when, at the moment of the click, the JSON parses, every form field is readable, and the form
describes the same recipe as the JSON (the form is synced from JSON edits and the JSON from form
edits; a click that lands before a sync finished is refused, never resolved silently). The same
check renders the problem list, so a page that says "not launchable" cannot launch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from moeq.app.form_check import model_problem, read_form, recipe_errors
from moeq.app.recipe_fill import _flat, apply_overrides
from moeq.app.recipe_form import LaunchForm, form_to_recipe


@dataclass
class LaunchCheck:
    recipe: dict | None = None  # the JSON's recipe when it parses as a JSON object
    form_recipe: dict | None = None  # the recipe the form (plus kept overrides) describes, when readable
    problems: list[str] = field(default_factory=list)

    @property
    def launchable(self) -> bool:
        return self.recipe is not None and not self.problems


def parse_json(text) -> tuple[dict | None, str | None]:
    """(recipe dict, None) or (None, one line why the JSON text is not a recipe object)."""
    try:
        data = json.loads(text or "")
    except RecursionError:
        return None, "recipe JSON: nested too deeply (a recipe is a few levels deep)"
    except (json.JSONDecodeError, TypeError) as exc:
        return None, f"recipe JSON: not valid JSON ({exc})"
    if not isinstance(data, dict):
        return None, "recipe JSON: must be a JSON object ({...})"
    return data, None


def form_recipe(form_values: list, overrides: dict) -> tuple[dict | None, list[str]]:
    """The recipe the form describes (None when a field is unreadable) and one line per form problem."""
    form, errors = read_form(LaunchForm(*form_values))
    try:
        recipe = apply_overrides(form_to_recipe(form), overrides or {})
    except ValueError as exc:  # e.g. an unknown MoQE variant word
        return None, [*errors, f"MoQE variants: {exc}"]
    return (None if errors else recipe), errors


def canonical(recipe: dict) -> dict | None:
    from moeq.contract.errors import MoeqError
    from moeq.contract.recipe import parse_recipe

    try:
        return parse_recipe(recipe).to_dict()
    except MoeqError:
        return None


def first_difference(a: dict, b: dict) -> str | None:
    """The first dotted key whose value differs between two recipes (canonical when both parse)."""
    ca, cb = canonical(a), canonical(b)
    both = ca is not None and cb is not None
    fa, fb = _flat(ca if both else a), _flat(cb if both else b)
    for key in sorted(set(fa) | set(fb)):
        if fa.get(key) != fb.get(key):
            return f"{key}: form {json.dumps(fa.get(key))}, JSON {json.dumps(fb.get(key))}"
    return None


def check_launch(text, form_values: list, overrides: dict, model_roots) -> LaunchCheck:
    """Everything the page can say about launching now (admission, which needs the store, is the caller's)."""
    out = LaunchCheck()
    recipe, bad_json = parse_json(text)
    from_form, form_errors = form_recipe(form_values, overrides)
    out.problems += form_errors
    if bad_json:
        out.problems.append(bad_json)
        return out
    out.recipe, out.form_recipe = recipe, from_form
    if from_form is not None:
        diff = first_difference(from_form, recipe)
        if diff:
            out.problems.append(f"the form and the recipe JSON differ ({diff}); wait for the page to update "
                                "or edit one of them")
    out.problems += recipe_errors(recipe)
    problem = model_problem(recipe.get("model", ""), model_roots, recipe)
    if problem and not any(e.startswith("model:") for e in out.problems):
        out.problems.append(problem)
    return out
