"""The words the shells show and accept, in one place: bit widths, router modes, samplers,
allocation methods, technique and preset names, the launch form's labels and the recipe fragment
each label stands for, MoQE variant words, the CLI's help line and the job tags.

Everything here is derived from the recipe dataclasses and the technique registry
(`moeq.contract.techniques`), so adding a technique (docs/adding_a_technique.md) or a choice to a `Literal`
shows up in the launch form, the CLI and the run tags without touching `moeq/app/` or `moeq/jobs/`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import get_args, get_type_hints

from moeq.contract.presets import PRESETS
from moeq.contract.recipe import ACT_BITS, WEIGHT_BITS, AllocationSpec, CalibrationSpec, Recipe, RouterSpec
from moeq.contract.techniques import (ALIASES, DUQUANT_ALPHA, EAQUANT_ALPHA, SMOOTHQUANT_ALPHA, SmoothConfig, registry,
                             technique_of)

__all__ = ["ACT_BITS", "ALLOCATION_METHODS", "GROUP_SIZE_CHOICES", "ROUTER_MODES", "SAMPLERS", "SMOOTHING_ALPHAS",
           "WEIGHT_BITS", "FormChoice", "cli_techniques_help", "form_choices", "form_labels", "form_techniques",
           "labels_for", "preset_choices", "preset_names", "recipe_names", "recipe_tags", "technique_names",
           "variant_words"]


def _literal(cls: type, name: str) -> tuple:
    return get_args(get_type_hints(cls)[name])


ROUTER_MODES: tuple[str, ...] = _literal(RouterSpec, "mode")
SAMPLERS: tuple[str, ...] = _literal(CalibrationSpec, "sampler")
ALLOCATION_METHODS: tuple[str, ...] = _literal(AllocationSpec, "method")
SMOOTH_AGGREGATES: tuple[str, ...] = _literal(SmoothConfig, "aggregate")
GROUP_SIZE_CHOICES = ("128", "64", "32", "channel")  # the form's suggestions; any divisor is accepted
SMOOTHING_ALPHAS = MappingProxyType({"smoothquant": SMOOTHQUANT_ALPHA, "eaquant": EAQUANT_ALPHA,
                                     "duquant": DUQUANT_ALPHA})


def technique_names() -> tuple[str, ...]:
    """Registered technique names in execution order."""
    return tuple(t.name for t in registry())


def recipe_names() -> tuple[str, ...]:
    """Every name a recipe's `techniques` list accepts: technique names, then aliases."""
    return (*technique_names(), *ALIASES)


def preset_names() -> tuple[str, ...]:
    return tuple(PRESETS)


def preset_choices() -> tuple[str, ...]:
    """The form's preset dropdown: 'none' and every preset."""
    return ("none", *PRESETS)


# -- the launch form's technique checkboxes --------------------------------------------------------

@dataclass(frozen=True)
class FormChoice:
    """One checkbox: `label` stands for technique `technique` with `options`.

    A plain choice sets the technique (among choices of the same slot, the later one in this list
    wins: agq over gptq over rtn). A `modifier` only adds its options to the technique another
    checkbox already chose (clip search on rtn, down_proj on smoothing) — or, alone, stands for the
    technique with its options. `identity` (default: all options) is what a recipe's technique must
    match for the form to show this label when it is filled back from a recipe; `word` is the short
    name in MoQE variant strings ('rotation+gptq'), None for none."""

    label: str
    technique: str
    options: dict = field(default_factory=dict)
    modifier: bool = False
    identity: dict | None = None
    word: str | None = ""

    @property
    def short(self) -> str | None:
        return self.label if self.word == "" else self.word

    def matches(self, tech: dict) -> bool:
        ident = self.options if self.identity is None else self.identity
        return all(tech.get(k) == v for k, v in ident.items())


# Labelled choices for the built-in techniques; a technique without an entry gets one plain checkbox
# labelled with its name.
_LABELLED: dict[str, tuple[FormChoice, ...]] = {
    "smooth": (
        FormChoice("smoothquant", "smooth", {"aggregate": "all", "alpha": SMOOTHQUANT_ALPHA},
                   identity={"aggregate": "all"}),
        FormChoice("expert-aware smoothing (EAQuant)", "smooth", {"aggregate": "expert", "alpha": EAQUANT_ALPHA},
                   identity={"aggregate": "expert"}, word="eaquant-smooth"),
        FormChoice("down_proj smoothing", "smooth", {"aggregate": "all", "alpha": SMOOTHQUANT_ALPHA, "down_proj": True},
                   modifier=True, identity={"down_proj": True}, word=None),
    ),
    "rtn": (
        FormChoice("rtn", "rtn", {"clip_search": False}),
        FormChoice("clip search", "rtn", {"clip_search": True}, modifier=True, word="clip"),
    ),
    "gptq": (
        FormChoice("gptq", "gptq"),
        FormChoice("agq (affinity-guided GPTQ)", "gptq", {"affinity": True}, word="agq"),
    ),
}
# the order the checkboxes were shown in before they were derived from the registry
_FORM_ORDER = ("rtn", "gptq", "agq (affinity-guided GPTQ)", "rotation", "smoothquant",
               "expert-aware smoothing (EAQuant)", "down_proj smoothing", "clip search")


def form_choices() -> tuple[FormChoice, ...]:
    """Every technique checkbox, in execution order of the techniques."""
    out: list[FormChoice] = []
    for t in registry():
        out += _LABELLED.get(t.name) or (FormChoice(t.name, t.name),)
    return tuple(out)


def form_labels() -> tuple[str, ...]:
    """The checkbox labels as the form shows them (built-ins first in their usual order)."""
    labels = [c.label for c in form_choices()]
    known = [x for x in _FORM_ORDER if x in labels]
    return (*known, *(x for x in labels if x not in known))


def _slot(name: str) -> str:
    """Techniques that exclude each other share a slot: the weight quantizers (one per recipe)."""
    t = next(t for t in registry() if t.name == name)
    return "weights" if t.stage == "weights" else name


def form_techniques(labels: list[str]) -> list[dict]:
    """Checked labels → technique dicts (one weight quantizer, one per other technique), in order."""
    chosen = [c for c in form_choices() if c.label in labels]
    slots: dict[str, dict] = {}
    for c in chosen:
        if not c.modifier:
            slots[_slot(c.technique)] = {"name": c.technique, **c.options}
    for c in chosen:
        if c.modifier:
            slot = _slot(c.technique)
            if slot not in slots:
                slots[slot] = {"name": c.technique, **c.options}
            elif slots[slot]["name"] == c.technique:
                slots[slot].update({k: v for k, v in c.options.items() if k in (c.identity or c.options)})
    order = {}
    for t in registry():
        order.setdefault(_slot(t.name), len(order))
    return [slots[s] for s in sorted(slots, key=order.__getitem__)]


def labels_for(techniques: list[dict]) -> list[str]:
    """The inverse of `form_techniques`: the checkbox labels that best describe a recipe's techniques
    (what the labels cannot say — another alpha, say — the caller keeps as recipe overrides)."""
    out: list[str] = []
    for tech in techniques:
        choices = [c for c in form_choices() if c.technique == tech.get("name")]
        plain = [c for c in choices if not c.modifier and c.matches(tech)]
        mods = [c for c in choices if c.modifier and c.matches(tech)]
        if plain:
            out.append(max(plain, key=lambda c: len(c.identity or c.options)).label)
        elif not mods and choices:
            out.append(next(c for c in choices if not c.modifier).label)
        out += [c.label for c in mods]
    return out


def variant_words() -> dict[str, str]:
    """Short words of MoQE variant strings ('rtn; rotation+gptq') → checkbox label."""
    return {c.short: c.label for c in form_choices() if c.short}


def cli_techniques_help() -> str:
    """The CLI's list of technique names, aliases and presets."""
    return f"techniques: {', '.join(recipe_names())}; presets: {', '.join(preset_names())}"


# -- tags ------------------------------------------------------------------------------------------

def recipe_tags(recipe: Recipe) -> str:
    """The comma-separated technique tags a run is stored with (what the runs table filters on):
    technique names, 'router:<mode>' unless FP, 'alloc:<method>'; 'moqe' for a MoQE run."""
    if recipe.moqe is not None:  # the top-level techniques do not apply; the variants carry their own
        return "moqe"
    names = ",".join(technique_of(t).name for t in recipe.techniques)
    if recipe.router.mode != "fp":
        names += f",router:{recipe.router.mode}"
    if recipe.allocation is not None:
        names += f",alloc:{recipe.allocation.method}"
    return names

