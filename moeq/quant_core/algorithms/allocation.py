"""Per-expert bit widths: the recipe's weight bits (no allocation, or allocation.method "uniform" —
which only changes the non-expert width to allocation.other_bits), else an allocation method."""

from __future__ import annotations

from pathlib import Path

import torch

from moeq.quant_core.adapters.model import MoEModel
from moeq.quant_core.quantized import QuantState
from moeq.contract.recipe import Recipe


def expert_bits(moe: MoEModel, recipe: Recipe, model_dir: Path, state: QuantState) -> dict[int, torch.Tensor]:
    """Bit width of every routed expert, per MoE layer ([n] int64 tensors)."""
    alloc = recipe.allocation
    if alloc is None or alloc.method == "uniform":
        out = {i: torch.full((b.num_experts,), recipe.weights.bits, dtype=torch.int64) for i, b in moe.blocks.items()}
        if alloc is not None:
            state.diagnostics["allocation"] = {"method": "uniform", "expert_bits": recipe.weights.bits,
                                               "other_bits": alloc.other_bits, "seconds": 0.0,
                                               "avg_expert_bits": float(recipe.weights.bits)}
        return out
    from moeq.quant_core.algorithms.mixed_precision import allocate

    return allocate(moe, alloc, model_dir, state)
