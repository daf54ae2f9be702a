"""The technique registry: recipe name → config type, stage of the layer walk, apply function.

The recipe parser, the launch form, the CLI help and the job tags read it (through
`moeq.contract.vocabulary`); `moeq.quant_core.quantize` walks the stages and calls each technique's apply function
(`moeq.quant_core.apply`). Torch-free: an apply function is named as "module:function" and imported by
the numeric core when a run needs it (a test may pass the function itself). The built-in techniques
register themselves in moeq/contract/techniques.py; docs/adding_a_technique.md shows how to add one.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Iterator

# The stages of the layer walk, in the order they run (moeq/quant_core/quantize.py):
#   model   — once, on the whole model, before the walk (e.g. a residual rotation);
#   layer   — per decoder layer, on calibration activations: transforms that change what the linears
#             see (smoothing, DuQuant); the apply function returns the layer's hooks;
#   weights — the weight quantizer (one per recipe) every linear is quantized with.
STAGES = ("model", "layer", "weights")


@dataclass(frozen=True)
class Technique:
    """One registry line: recipe name, config type, stage, apply function ("module:function" or the
    function), and whether the technique needs calibration data."""

    name: str
    config: type
    stage: str
    apply: str | Callable[..., Any]
    needs_calibration: bool = False

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"technique {self.name!r}: stage must be one of {STAGES}, got {self.stage!r}")
        if not (dataclasses.is_dataclass(self.config) and self.config.__dataclass_params__.frozen):
            raise ValueError(f"technique {self.name!r}: config must be a frozen dataclass")
        if not self.name.isidentifier():
            raise ValueError(f"technique name {self.name!r} must be a plain word (letters, digits, _)")


_REGISTRY: dict[str, Technique] = {}
_CONFIGS: dict[str, type] = {}
TECHNIQUES: MappingProxyType = MappingProxyType(_CONFIGS)  # name → config type (live view)

def register(technique: Technique) -> Technique:
    """Add a technique; its name becomes valid in recipes, the form, the CLI help and the job tags."""
    if technique.name in _REGISTRY:
        raise ValueError(f"technique {technique.name!r} is already registered")
    if any(t.config is technique.config for t in _REGISTRY.values()):
        raise ValueError(f"config {technique.config.__name__} already belongs to a technique")
    _REGISTRY[technique.name] = technique
    _CONFIGS[technique.name] = technique.config
    return technique


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)
    _CONFIGS.pop(name, None)


@contextmanager
def registered(technique: Technique) -> Iterator[Technique]:
    """`register` for the duration of a `with` block (tests, experiments), then remove it again."""
    register(technique)
    try:
        yield technique
    finally:
        unregister(technique.name)


def registry() -> tuple[Technique, ...]:
    """Every technique in canonical execution order: by stage, then in registration order."""
    return tuple(sorted(_REGISTRY.values(), key=lambda t: STAGES.index(t.stage)))


def technique_of(cfg: Any) -> Technique:
    """The registry entry of a technique config instance."""
    for t in _REGISTRY.values():
        if type(cfg) is t.config:
            return t
    raise KeyError(f"{type(cfg).__name__} is not a registered technique config")


def order_key(cfg: Any) -> int:
    """Position of `cfg`'s technique in the canonical execution order."""
    return registry().index(technique_of(cfg))


def weight_quantizers() -> tuple[type, ...]:
    return tuple(t.config for t in registry() if t.stage == "weights")
