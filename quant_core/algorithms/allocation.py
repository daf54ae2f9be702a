"""Per-expert bit widths: uniform (the recipe's weight bits) unless an allocation method is given."""

from __future__ import annotations

from pathlib import Path

import torch

from quant_core.adapters.model import MoEModel
from quant_core.quantized import QuantState
from quant_core.recipe import Recipe


def expert_bits(moe: MoEModel, recipe: Recipe, model_dir: Path, state: QuantState) -> dict[int, torch.Tensor]:
    """Bit width of every routed expert, per MoE layer ([n] int64 tensors)."""
    alloc = recipe.allocation
    if alloc is None:
        return {i: torch.full((b.num_experts,), recipe.weights.bits, dtype=torch.int64) for i, b in moe.blocks.items()}
    from quant_core.algorithms.mixed_precision import allocate

    return allocate(moe, alloc, model_dir, state)
