"""Frozen configs of every technique a recipe can name, and their registry lines name → config.

Torch-free so that the web app can validate recipes. Each technique is one registry line
(moeq.contract.registry): name, config, stage of the layer walk, and the function in `moeq.quant_core.apply` that
applies it (docs/adding_a_technique.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from moeq.contract.errors import RecipeError
from moeq.contract.registry import (STAGES, TECHNIQUES, Technique, order_key, register, registered, registry, technique_of,
                           unregister, weight_quantizers)


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
    """GPTQ with error feedback; `affinity` turns on MoEQuant AGQ (gate-weighted Hessians); `clip_search`
    picks each group's clip by the reference quantizer's error search (GPTQ/QuaRot/MoEQuant `--w_clip`)."""

    block_size: int = 128
    damp: float = 0.01
    act_order: bool = True  # static groups; measured better (docs/methods.md "Weight quantization grid")
    affinity: bool = False
    clip_search: bool = False
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
    readers="all": the weight maximum of a factor is taken over every linear reading the smoothed
    input (moeq's; EAQuant's released code). readers="q_up": DuQuant's released code — the attention
    factor from q_proj's weight alone, the MoE-side factor from the up_proj weights alone (each routed
    expert's up rows, each shared expert's up_proj; the router, gate_proj and the shared-expert gate
    excluded). Only the factor's source changes: every reader is still scaled by it.
    """

    alpha: float = SMOOTHQUANT_ALPHA
    aggregate: Literal["all", "router", "expert"] = "all"
    readers: Literal["all", "q_up"] = "all"
    include_router: bool = True
    attention: bool = True
    down_proj: bool = False
    v_o: bool = False  # also smooth o_proj's input into v_proj's rows (DuQuant/EAQuant; skipped under GQA)

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
    # MoE input: one transform shared by the router, the routed and the shared experts (moeq's), or one
    # per routed expert fitted on its routed tokens, the router and each shared expert their own (EAQuant's)
    moe_input: Literal["shared", "expert"] = "shared"

    def __post_init__(self) -> None:
        _check(self.block_size >= 1, "block_size", "must be >= 1")
        _check(0 <= self.rotation_steps <= 4096, "rotation_steps", "must be in [0, 4096]")
        _check(8 <= self.max_tokens <= 1_000_000, "max_tokens", "must be in [8, 1000000]")


TechniqueConfig = RtnConfig | GptqConfig | SmoothConfig | RotationConfig | DuQuantConfig

# The built-in techniques, one registry line each (the apply functions live in moeq/quant_core/apply/);
# the registration order within a stage is the execution order.
register(Technique("rotation", RotationConfig, "model", "moeq.quant_core.apply.rotation:apply"))
register(Technique("smooth", SmoothConfig, "layer", "moeq.quant_core.apply.smoothing:apply", needs_calibration=True))
register(Technique("duquant", DuQuantConfig, "layer", "moeq.quant_core.apply.duquant:apply", needs_calibration=True))
register(Technique("rtn", RtnConfig, "weights", "moeq.quant_core.apply.weights:apply"))
register(Technique("gptq", GptqConfig, "weights", "moeq.quant_core.apply.weights:apply", needs_calibration=True))

# Names accepted in recipes that stand for a configured technique.
ALIASES: dict[str, tuple[str, dict]] = {
    "smoothquant": ("smooth", {"aggregate": "all", "alpha": SMOOTHQUANT_ALPHA}),
    "agq": ("gptq", {"affinity": True}),
    "hadamard": ("rotation", {}),
}

__all__ = ["ALIASES", "STAGES", "TECHNIQUES", "DuQuantConfig", "GptqConfig", "RotationConfig", "RtnConfig",
           "SmoothConfig", "Technique", "TechniqueConfig", "order_key", "register", "registered", "registry",
           "technique_of", "unregister", "weight_quantizers"]
