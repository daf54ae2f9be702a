"""Quantize a dense gated MLP (dense layers, shared experts) from its input tokens, sequentially:
gate/up on the captured input, then down on inputs recomputed through the quantized gate/up."""

from __future__ import annotations

import torch
from torch import nn

from moeq.quant_core.adapters.model import get_path
from moeq.quant_core.algorithms.capture import InputStats
from moeq.quant_core.algorithms.weights import Scheme, quantize_linear
from moeq.quant_core.quantized import QuantState
from moeq.contract.techniques import GptqConfig

CHUNK_TOKENS = 8192


@torch.no_grad()
def _input_hessian(mlp: nn.Module, down: nn.Module, x: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Hessian of the input `down` (any linear of `mlp`) actually receives when `mlp` runs on x —
    after any input transform hooked on it (DuQuant)."""
    stats = InputStats()
    chunks: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def hook(mod, args):
        chunks.append(args[0].detach().reshape(-1, args[0].shape[-1]))
    handle = down.register_forward_pre_hook(hook)
    try:
        for c0 in range(0, x.shape[0], CHUNK_TOKENS):
            mlp(x[c0:c0 + CHUNK_TOKENS])
    finally:
        handle.remove()
    inputs = torch.cat(chunks)
    if weights is not None:
        inputs = inputs * weights.float().clamp(min=0).sqrt()[:, None]
    stats.update(inputs, want_hessian=True)
    return stats.H()


@torch.no_grad()
def quantize_mlp(mlp: nn.Module, x: torch.Tensor | None, in_names: tuple[str, ...], out_name: str, bits: int,
                 scheme: Scheme, state: QuantState, key_prefix: str, layer: int,
                 token_weights: torch.Tensor | None = None) -> None:
    """Quantize `mlp`'s input projections then its output projection, in place."""
    gptq = isinstance(scheme.method, GptqConfig) and x is not None
    first = next((get_path(mlp, n) for n in in_names if get_path(mlp, n) is not None), None)
    H_in = _input_hessian(mlp, first, x, token_weights) if gptq else None
    for name in in_names:
        mod = get_path(mlp, name)
        if mod is not None:
            state.add(quantize_linear(mod, f"{key_prefix}.{name}.weight", layer, bits, scheme, H_in))
    down = get_path(mlp, out_name)
    H_out = _input_hessian(mlp, down, x, token_weights) if gptq else None
    state.add(quantize_linear(down, f"{key_prefix}.{out_name}.weight", layer, bits, scheme, H_out))
