"""Frozen configs of every technique a recipe can name, and the technique registry.

The registry maps a name to its config type, the stage of the layer walk it runs in and the
function that applies it (docs/adding_a_technique.md). The recipe parser, the launch form, the CLI
help and the job tags read the registry (through `spec.vocabulary`); `quant_core.quantize` walks the
stages and calls each technique's apply function. Torch-free: an apply function is named as
"module:function" and imported by the numeric core when a run needs it (a test may pass the function
itself).
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Iterator, Literal

from spec.errors import RecipeError


def _check(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise RecipeError(key, message)


@dataclass(frozen=True)
class RtnConfig:
    """Round-to-nearest on the affine grid; optional per-channel clip search (docs/methods.md)."""

    clip_search: bool = False
    clip_min: float = 0.35
    clip_steps: int = 14

    def __post_init__(self) -> None:
        _check(0.0 < self.clip_min <= 1.0, "clip_min", "must be in (0, 1]")
        _check(1 <= self.clip_steps <= 200, "clip_steps", "must be in [1, 200]")


@dataclass(frozen=True)
class GptqConfig:
    """GPTQ with error feedback; `affinity` turns on MoEQuant AGQ (gate-weighted Hessians)."""

    block_size: int = 128
    damp: float = 0.01
    act_order: bool = True  # static groups; measured better (docs/methods.md "Weight quantization grid")
    affinity: bool = False
    min_tokens: int = 16
    fallback: Literal["rtn_clip", "all_tokens"] = "rtn_clip"
    batched: bool = True

    def __post_init__(self) -> None:
        _check(1 <= self.block_size <= 4096, "block_size", "must be in [1, 4096]")
        _check(0.0 < self.damp < 1.0, "damp", "must be in (0, 1)")
        _check(self.min_tokens >= 1, "min_tokens", "must be >= 1")


SMOOTHQUANT_ALPHA = 0.5  # SmoothQuant's migration strength
EAQUANT_ALPHA = 0.6  # EAQuant's published setting (docs/methods.md)
DUQUANT_ALPHA = 0.6  # the smoothing DuQuant runs before its transforms (docs/methods.md)


@dataclass(frozen=True)
class SmoothConfig:
    """SmoothQuant-style channel scaling folded into norms.

    aggregate="all": one factor per channel from all tokens and all consumer weights (SmoothQuant).
    aggregate="router": the factor the router alone would ask for (all tokens, router weight only) —
    the per-router-only smoothing EAQuant improves on.
    aggregate="expert": EAQuant expert-aware aggregation (max over per-expert factors computed
    from each expert's routed tokens, plus the router term unless include_router is false).
    """

    alpha: float = SMOOTHQUANT_ALPHA
    aggregate: Literal["all", "router", "expert"] = "all"
    include_router: bool = True
    attention: bool = True
    down_proj: bool = False

    def __post_init__(self) -> None:
        _check(0.0 <= self.alpha <= 1.0, "alpha", "must be in [0, 1]")


@dataclass(frozen=True)
class RotationConfig:
    """Offline randomized Hadamard rotation of the residual stream (QuaRot-style)."""

    seed: int = 0


@dataclass(frozen=True)
class DuQuantConfig:
    """DuQuant online per-linear transforms (docs/methods.md "DuQuant"): at every quantized linear's
    input, block rotation → zigzag permutation → block rotation, fitted on calibration activations;
    the inverse is folded into the weights. Paper/code defaults: block 128, 256 greedy steps."""

    block_size: int = 128
    rotation_steps: int = 256
    max_tokens: int = 512  # calibration rows each transform is fitted on
    seed: int = 0

    def __post_init__(self) -> None:
        _check(self.block_size >= 1, "block_size", "must be >= 1")
        _check(0 <= self.rotation_steps <= 4096, "rotation_steps", "must be in [0, 4096]")
        _check(8 <= self.max_tokens <= 1_000_000, "max_tokens", "must be in [8, 1000000]")


# The stages of the layer walk, in the order they run (quant_core/quantize.py):
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

# Names accepted in recipes that stand for a configured technique.
ALIASES: MappingProxyType = MappingProxyType({
    "smoothquant": ("smooth", {"aggregate": "all", "alpha": SMOOTHQUANT_ALPHA}),
    "agq": ("gptq", {"affinity": True}),
    "hadamard": ("rotation", {}),
})


def register(technique: Technique) -> Technique:
    """Add a technique; its name becomes valid in recipes, the form, the CLI help and the job tags."""
    if technique.name in _REGISTRY or technique.name in ALIASES:
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


TechniqueConfig = RtnConfig | GptqConfig | SmoothConfig | RotationConfig | DuQuantConfig

# The built-in techniques (one line each; the apply functions live in quant_core/apply/).
register(Technique("rotation", RotationConfig, "model", "quant_core.apply.rotation:apply"))
register(Technique("smooth", SmoothConfig, "layer", "quant_core.apply.smoothing:apply", needs_calibration=True))
register(Technique("duquant", DuQuantConfig, "layer", "quant_core.apply.duquant:apply", needs_calibration=True))
register(Technique("rtn", RtnConfig, "weights", "quant_core.apply.weights:apply"))
register(Technique("gptq", GptqConfig, "weights", "quant_core.apply.weights:apply", needs_calibration=True))
