"""Quantize per-expert weight stacks of a token mixer (JetMoE's mixture-of-attention q / o projections)
as ordinary weights: each expert's [out, in] matrix on its own grid, by GPTQ on the inputs that expert
really received (read where the mixer hands each stack its tokens sorted by expert), RTN with a clip
search for experts that received none.
"""

from __future__ import annotations

import torch
from torch import nn

from moeq.quant_core.adapters.stacked import stack_expert_inputs
from moeq.quant_core.algorithms.capture import InputStats, LayerBatch, _run_until_stop, stop_before
from moeq.quant_core.algorithms.weights import Scheme, quantize_stacked
from moeq.quant_core.quantized import QuantState, WeightRecord


@torch.no_grad()
def collect_stack_inputs(layer: nn.Module, stacks: dict[str, nn.Module], batches: list[LayerBatch],
                         stop_at: str) -> dict[str, list[InputStats]]:
    """Per stack, per expert: the InputStats (with Hessian) of the tokens it received over `batches`."""
    stats = {key: [InputStats() for _ in range(mod.weight.shape[0])] for key, mod in stacks.items()}
    handles = []
    for key, mod in stacks.items():
        def hook(m, args, key=key):
            for e, x in enumerate(stack_expert_inputs(args)):
                if x.shape[0]:
                    stats[key][e].update(x.detach(), want_hessian=True)
        handles.append(mod.register_forward_pre_hook(hook))
    try:
        with stop_before(layer, stop_at):
            _run_until_stop(layer, batches)
    finally:
        for h in handles:
            h.remove()
    return stats


def quantize_stack(module: nn.Module, key: str, layer: int, bits: int, scheme: Scheme,
                   stats: list[InputStats] | None) -> WeightRecord:
    """Quantize `module.weight` [n, out, in] in place, one grid per expert (GPTQ where `stats` saw tokens)."""
    w = module.weight.data
    n = w.shape[0]
    seen = torch.tensor([s.count > 0 for s in stats]) if stats is not None else torch.zeros(n, dtype=torch.bool)
    H = None
    if stats is not None:
        H = torch.zeros(n, w.shape[2], w.shape[2], device=w.device)
        for e, s in enumerate(stats):
            if s.count:
                H[e] = s.H()
    return quantize_stacked(w, key, layer, "linear", torch.full((n,), bits), scheme, H, seen)


def quantize_stacks(layer: nn.Module, stacks: dict[str, nn.Module], batches: list[LayerBatch] | None, gptq: bool,
                    stop_at: str, bits: int, scheme: Scheme, state: QuantState, prefix: str, i: int) -> None:
    """Quantize every stack of layer i (keys are paths from the layer; records under `prefix`)."""
    stats = collect_stack_inputs(layer, stacks, batches, stop_at) if gptq and batches is not None else {}
    for key, mod in stacks.items():
        state.add(quantize_stack(mod, f"{prefix}.{key}.weight", i, bits, scheme, stats.get(key)))
