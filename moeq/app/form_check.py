"""Launch-form validation that reports every problem at once, each in the form's own words.

Form values are read leniently (a bad field is reported and replaced by its default so the other
fields can still be checked); the resulting recipe is parsed repeatedly, dropping each offending key,
so every recipe error is listed, not only the first.
"""

from __future__ import annotations

import copy
import math
from dataclasses import fields, replace

from moeq.app.recipe_form import LaunchForm
from moeq.contract.errors import MoeqError, RecipeError

# recipe key (longest prefix wins) → the label the Launch form shows for it
FORM_LABELS = {
    "model": "model", "weights.bits": "weight bits", "weights.group_size": "group size",
    "weights.symmetric": "symmetric", "weights": "weights", "activations.bits": "activation bits",
    "router": "router", "techniques": "techniques", "calibration.source": "calibration source",
    "calibration.samples": "calibration samples", "calibration.seq_len": "calibration sequence length",
    "calibration.sampler": "sampler", "calibration.balance": "EAQuant balance r", "calibration": "calibration",
    "allocation.avg_bits": "mixed precision: average bits", "allocation.tiers": "mixed precision: tiers",
    "allocation": "mixed precision", "eval.tasks": "evaluation tasks", "eval.limit": "items per task",
    "eval": "evaluation", "seed": "seed", "moqe": "MoQE variants",
}
MAX_RECIPE_ERRORS = 12


def form_label(key: str) -> str:
    key = key.split("[")[0]
    while key:
        if key in FORM_LABELS:
            return FORM_LABELS[key]
        key = key.rpartition(".")[0]
    return "recipe"


def _shown(value) -> str:
    """`value` quoted for an error line, cut short (a 5000-digit integer cannot even be str()-ed)."""
    try:
        text = str(value)
    except ValueError:
        return "this number"
    return repr(text if len(text) <= 40 else text[:40] + "…")


def _float(value, label: str, errors: list[str]) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        errors.append(f"{label}: {_shown(value)} is not a number")
        return None
    except OverflowError:
        f = math.inf
    if not math.isfinite(f):
        errors.append(f"{label}: {_shown(value)} is too large" if f == f else f"{label}: enter a number")
        return None
    return f


def _whole(value, label: str, errors: list[str], allow_empty: bool = False):
    if value is None or (isinstance(value, str) and not value.strip()):
        if allow_empty:
            return 0
        errors.append(f"{label}: enter a whole number")
        return None
    f = _float(value, label, errors)
    if f is None:
        return None
    if f != int(f):
        errors.append(f"{label}: {value} is not a whole number")
        return None
    return int(f)


def _number(value, label: str, errors: list[str]):
    return _float(value, label, errors)


def read_form(form: LaunchForm) -> tuple[LaunchForm, list[str]]:
    """A LaunchForm whose every field has a usable type (defaults where the user's value is not),
    plus one line per unusable field naming it as the form does."""
    errors: list[str] = []
    clean: dict = {}
    group = str(form.group_size if form.group_size is not None else "").strip()
    if group.lower() not in ("channel", "none", "-1", "0"):
        g = _whole(group, "group size", errors)
        if g is None:
            errors[-1] = f"group size: {group!r} is not a whole number (or 'channel' for one scale per output channel)"
        else:
            clean["group_size"] = str(g)
    for name, label in (("calib_samples", "calibration samples"), ("calib_seq_len", "calibration sequence length"),
                        ("seed", "seed")):
        v = _whole(getattr(form, name), label, errors)
        if v is not None:
            clean[name] = v
    v = _whole(form.eval_limit, "items per task", errors, allow_empty=True)
    if v is not None:
        clean["eval_limit"] = v
    for name, label in (("balance_r", "EAQuant balance r"), ("avg_bits", "mixed precision: average bits")):
        v = _number(getattr(form, name) if getattr(form, name) is not None else 0, label, errors)
        if v is not None:
            clean[name] = v
    if form.allocation != "none":
        bad = [x for x in str(form.tiers).split(",") if x.strip() and not x.strip().isdigit()]
        if bad:
            errors.append(f"mixed precision: tiers: {bad[0].strip()!r} is not a bit width (e.g. '2,3,4')")
    if not str(form.model or "").strip():
        errors.append("model: choose a zoo model or enter a local model directory")
    defaults = {f.name: f.default for f in fields(LaunchForm) if not callable(f.default)}
    bad_fields = {"group_size", "calib_samples", "calib_seq_len", "seed", "eval_limit", "balance_r", "avg_bits"}
    fixed = {k: defaults[k] for k in bad_fields if k not in clean}
    out = replace(form, **clean, **fixed)
    if form.allocation != "none" and any("tiers" in e for e in errors):
        out = replace(out, tiers=defaults["tiers"])
    return out, errors


def _drop(recipe: dict, key: str) -> bool:
    """Remove the recipe entry at `key` ('weights.bits'; a list element such as techniques[2] goes whole)."""
    parts = key.replace("]", "").replace("[", ".").split(".")
    node = recipe
    for i, p in enumerate(parts):
        if isinstance(node, list):
            if not p.isdigit() or int(p) >= len(node):
                return False
            node.pop(int(p))
            return True
        if not isinstance(node, dict) or p not in node:
            return False
        if i == len(parts) - 1:
            del node[p]
            return True
        node = node[p]
    return False


def without_run_refs(recipe: dict) -> dict:
    """`recipe` as the parser sees it after admission: a MoQE `run:<id>` variant becomes the run's saved
    model (`path:`) there, so here it stands in as one; whether the run exists and may be read is
    admission's answer, shown on Launch."""
    moqe = recipe.get("moqe")
    variants = moqe.get("variants") if isinstance(moqe, dict) else None
    if isinstance(variants, list):
        moqe["variants"] = [f"path:{v}" if isinstance(v, str) and v.startswith("run:") else v for v in variants]
    return recipe


def recipe_problems(recipe) -> list[MoeqError]:
    """Every problem parse_recipe finds (each offending key is dropped and the rest parsed again)."""
    from moeq.contract.recipe import parse_recipe

    if not isinstance(recipe, dict):
        try:
            parse_recipe(recipe)
        except MoeqError as exc:
            return [exc]
        return []
    work, out = without_run_refs(copy.deepcopy(recipe)), []
    for _ in range(MAX_RECIPE_ERRORS):
        try:
            parse_recipe(work)
            return out
        except RecipeError as exc:
            out.append(exc)
            if not _drop(work, exc.key):
                return out
        except MoeqError as exc:
            out.append(exc)
            return out
    return out


def recipe_errors(recipe) -> list[str]:
    """Every problem parse_recipe finds, each as '<form label>: <message> (recipe.<key>)'."""
    return [f"{form_label(e.key)}: {e.detail} (recipe.{e.key})" if isinstance(e, RecipeError) else str(e)
            for e in recipe_problems(recipe)]


def check_model_ref(ref: str, model_roots):
    """The FamilySpec of `ref` (a zoo name or a readable directory of an MoE model), else ModelError."""
    from moeq.contract.describe import describe_dir, detected_family, family_for_config, read_config
    from moeq.contract.families import FAMILY_BY_NAME
    from moeq.contract.zoo import ZOO, is_zoo_name
    from moeq.contract.model_ref import resolve_local_path

    if is_zoo_name(ref):
        return FAMILY_BY_NAME.get(ZOO[ref].family) or detected_family(ZOO[ref].family)
    path = resolve_local_path(ref, tuple(model_roots))
    describe_dir(path)
    return family_for_config(read_config(path))


def model_problem(ref: str, model_roots, recipe=None) -> str | None:
    """'model: <why>' when the model reference cannot be used, 'techniques: <why>' when its family
    refuses a technique of `recipe` (a recipe dict; problems of its own are recipe_errors'), else None."""
    from moeq.contract.coverage import check_run_family
    from moeq.contract.recipe import parse_recipe

    try:
        spec = check_model_ref(str(ref or "").strip(), model_roots)
    except MoeqError as exc:
        return f"model: {exc}"
    if spec is None or not isinstance(recipe, dict):
        return None
    try:
        parsed = parse_recipe(recipe)
    except MoeqError:
        return None
    try:
        check_run_family(parsed, spec)
    except RecipeError as exc:  # a MoQE variant's refusal names the variant
        return f"{exc.key if exc.key.startswith('moqe.') else 'techniques'}: {exc.detail}"
    return None


def problems_markdown(errors: list[str], notes: list[str] = ()) -> str:
    if errors:
        head = "⚠ 1 problem" if len(errors) == 1 else f"⚠ {len(errors)} problems"
        return head + " — not launchable:\n" + "\n".join(f"- {e}" for e in errors)
    return "✓ recipe is valid" + "".join(f"\n- {n}" for n in notes)
