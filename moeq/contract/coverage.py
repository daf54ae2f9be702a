"""Which technique features a family can take, and why not (torch-free).

Features that need only the routed experts and the router apply to every MoE model, described or
only found from the model; smoothing, rotation, DuQuant and EAQuant's router alignment need a family
description (norm readers, residual layout, routing rule) and are refused, with one line naming the
family and what is missing, when there is none — or when the description says the family cannot.
"""

from __future__ import annotations

from types import MappingProxyType

from moeq.contract.errors import RecipeError
from moeq.contract.family_spec import FamilySpec

# feature → (label shown to users, what a description must give for it; None: experts + router suffice)
FEATURES = MappingProxyType({
    "rtn": ("RTN", None),
    "gptq": ("GPTQ", None),
    "agq": ("AGQ (affinity-weighted GPTQ)", None),
    "allocation": ("mixed-precision allocation", None),
    "router_quantize": ("router quantization (RTN / GPTQ)", None),
    "ebss": ("EBSS calibration", None),
    "evaluation": ("evaluation", None),
    "routing_agreement": ("routing agreement", None),
    "smoothing": ("smoothing", "the attention readers of each norm"),
    "rotation": ("rotation", "the norm and residual layout"),
    "duquant": ("DuQuant", "the norm readers and expert layout"),
    "router_align": ("EAQuant router alignment", "the family's routing rule"),
})


def refusal(spec: FamilySpec, feature: str) -> str | None:
    """Why `spec` cannot take `feature`, or None when it can."""
    label, needs = FEATURES[feature]
    if needs is not None and not spec.described:
        return (f"family {spec.name} is found from the model but not described (no {needs} in "
                f"moeq/contract/families.py): {label} is refused")
    why = dict(spec.refuses).get(feature)
    if feature == "rotation" and why is None and not spec.rotation:
        why = "the family description says it cannot be rotated"
    return None if why is None else f"family {spec.name} cannot take {label}: {why}"


def support(spec: FamilySpec) -> dict[str, str | None]:
    """feature → None (applies) or the one-line reason it is refused."""
    return {f: refusal(spec, f) for f in FEATURES}


def recipe_features(recipe) -> list[str]:
    """The features a parsed recipe uses, in FEATURES order."""
    from moeq.contract.techniques import DuQuantConfig, GptqConfig, RotationConfig, SmoothConfig

    used = {"evaluation", "routing_agreement"}
    for t in recipe.techniques:
        if isinstance(t, SmoothConfig):
            used.add("smoothing")
        elif isinstance(t, RotationConfig):
            used.add("rotation")
        elif isinstance(t, DuQuantConfig):
            used.add("duquant")
        elif isinstance(t, GptqConfig):
            used.add("agq" if t.affinity else "gptq")
    if recipe.router.mode == "align":
        used.add("router_align")
    elif recipe.router.mode in ("quantize", "gptq"):
        used.add("router_quantize")
    if recipe.allocation is not None:
        used.add("allocation")
    if recipe.calibration.sampler == "ebss":
        used.add("ebss")
    return [f for f in FEATURES if f in used]


def check_recipe_family(recipe, spec: FamilySpec) -> None:
    """One RecipeError line for the first feature of `recipe` that `spec` refuses."""
    for feature in recipe_features(recipe):
        why = refusal(spec, feature)
        if why is not None:
            raise RecipeError("router.mode" if feature == "router_align" else "techniques", why)
