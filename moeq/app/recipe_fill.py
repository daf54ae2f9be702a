"""Recipe → Launch-form values (the inverse of recipe_form.form_to_recipe), for "Re-run with edits".

Every field the form can express is set from the recipe; whatever the form cannot express (a
smoothing alpha, eval.ppl_windows, an exact technique list the checkboxes cannot say) is kept as
"from recipe" overrides that are laid over the form's recipe on every edit, so nothing is lost.
"""

from __future__ import annotations

import copy
from dataclasses import asdict

from moeq.app.recipe_form import LaunchForm, form_to_recipe
from moeq.contract.vocabulary import labels_for


def _flat(d, prefix: str = "") -> dict:
    out = {}
    if isinstance(d, dict) and d:
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = d
    return out


def _canonical(recipe: dict) -> dict:
    from moeq.contract.recipe import parse_recipe

    return parse_recipe(recipe).to_dict()


def recipe_to_form(recipe: dict) -> tuple[LaunchForm, dict[str, object]]:
    """(form values, overrides the form cannot express: dotted key → value from the recipe). A MoQE
    `run:<id>` variant (admission resolves it) is kept as written."""
    from moeq.app.form_check import without_run_refs

    full = _canonical(without_run_refs(copy.deepcopy(recipe)))
    w, cal, ev = full["weights"], full["calibration"], full["eval"]
    alloc = full.get("allocation")
    router = full["router"]["mode"] if isinstance(full["router"], dict) else full["router"]
    form = LaunchForm(
        model=full["model"], weight_bits=w["bits"],
        group_size="channel" if w["group_size"] is None else str(w["group_size"]), symmetric=bool(w["symmetric"]),
        act_bits=full["activations"]["bits"], router=router, preset="none",
        techniques=labels_for(full.get("techniques") or []),
        calib_source=cal["source"], calib_samples=cal["samples"], calib_seq_len=cal["seq_len"],
        sampler=cal["sampler"], balance_r=float((cal.get("balance") or {}).get("r", 0.0)),
        allocation=alloc["method"] if alloc else "none", avg_bits=float(alloc["avg_bits"]) if alloc else 3.0,
        tiers=",".join(str(t) for t in alloc["tiers"]) if alloc else "2,3,4",
        eval_tasks=",".join(ev["tasks"]), eval_limit=ev["limit"] or 0, seed=full["seed"], moqe_variants="")
    if full.get("moqe"):  # variants are kept whole; the form's MoQE box cannot say every variant recipe
        written = (recipe.get("moqe") or {}).get("variants") or []
        variants = [w if isinstance(w, str) and w.startswith("run:") else v
                    for v, w in zip(full["moqe"]["variants"], written)]
        return form, {"moqe": {**full["moqe"], "variants": variants}, **_diff(_canonical(form_to_recipe(form)), full, skip=("moqe",))}
    return form, _diff(_canonical(form_to_recipe(form)), full)


def _diff(from_form: dict, full: dict, skip: tuple[str, ...] = ()) -> dict[str, object]:
    a, b = _flat(from_form), _flat(full)
    out = {}
    for key, value in b.items():
        if key.split(".")[0] in skip:
            continue
        if key not in a or a[key] != value:
            out[key] = value
    return out


def apply_overrides(recipe: dict, overrides: dict[str, object]) -> dict:
    """`recipe` with each dotted-key override set (the recipe's own values the form cannot express)."""
    out = copy.deepcopy(recipe)
    for key, value in (overrides or {}).items():
        node, parts = out, key.split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[parts[-1]] = copy.deepcopy(value)
    return out


def form_values(form: LaunchForm) -> list:
    """The values in the order of the Launch tab's form inputs (LaunchForm field order)."""
    return list(asdict(form).values())
