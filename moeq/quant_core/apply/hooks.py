"""What a "layer"-stage technique does at each site of one decoder layer (see moeq/quant_core/quantize.py).

Every method is optional (the base class does nothing); the layer walk calls them in the registry
order of the recipe's techniques, so smoothing runs before the DuQuant transforms it feeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class MoeInput:
    """The MoE block's calibration input as the layer hooks pass it on: `x` is the block input (main
    then reserve tokens) after any folded scaling, `x_t` what the router and experts see after any
    online transform `t_in` (replayed at inference by QuantExperts)."""

    x: torch.Tensor
    x_t: torch.Tensor
    n_main: int
    t_in: Any = None
    x_experts: torch.Tensor | None = None  # what the routed experts see, when not x_t (per-expert transforms)
    t_router: Any = None  # the router's own input transform, when not t_in


class LayerHooks:
    """No-op hooks; a technique overrides the sites it acts on."""

    wants_attention_stats = False  # the walk collects the attention inputs' statistics for `attention`
    # reaches the routed experts only through the quantizer's `expert_access` (so a streamed run may
    # load them by chunks); a technique that reads `block.experts` directly leaves this False
    chunked_experts = False

    def attention(self, i: int, layer: nn.Module, attn: dict[str, nn.Linear], batches: list, stats: dict | None,
                  prefix: str) -> tuple[dict | None, bool]:
        """Before the attention linears are quantized: returns (stats, inputs_changed); when the
        linears' inputs changed, the walk recollects their Hessians for GPTQ."""
        return stats, False

    def dense_mlp(self, i: int, mlp: nn.Module, x: torch.Tensor, prefix: str) -> None:
        """Before a dense MLP (first dense layers) is quantized; `x` its calibration input."""

    def moe_input(self, i: int, block, site: MoeInput, prefix: str) -> None:
        """Before the router is set up: may rescale `site.x` or add an online transform."""

    def experts_down(self, i: int, block, tokens, x_t: torch.Tensor, prefix: str) -> list | None:
        """After dispatch, before the routed experts are quantized: per-expert down_proj input
        transforms (or None)."""
        return None

    def experts_in(self, i: int) -> list | None:
        """After `experts_down`: per-expert input transforms of layer i's routed experts (or None),
        replayed at inference by QuantExperts in place of a shared `t_in`."""
        return None
