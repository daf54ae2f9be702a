"""Quantize one MoE block's routed experts from their routed calibration tokens.

gate/up share each expert's input, so they are solved together on the fused [n, 2I, d] view
(GPTQ rows are independent given H); down is solved after, on inputs recomputed through the
*quantized* gate/up. Experts below `min_tokens` routed tokens take the recorded fallback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from moeq.quant_core.adapters.model import MoEBlock
from moeq.quant_core.algorithms.weights import Scheme, quantize_stacked_measured
from moeq.quant_core.functional.gptq import hessian
from moeq.quant_core.quantized import QuantState
from moeq.contract.techniques import GptqConfig


@dataclass
class RoutedTokens:
    """Calibration tokens of one MoE layer with the dispatch the (final) router makes for them."""

    x: torch.Tensor  # [T, d] MoE block input
    index: torch.Tensor  # [T, k]
    weights: torch.Tensor  # [T, k] gate weights
    selection: list[torch.Tensor] | None = None  # per expert: chosen (token, slot) flat positions

    def per_expert(self, num_experts: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """For each expert: (token indices, gate weights) of the tokens used to calibrate it."""
        k = self.index.shape[1]
        flat_w = self.weights.reshape(-1)
        out = []
        for e in range(num_experts):
            if self.selection is not None:
                pos = self.selection[e]
            else:
                pos = torch.nonzero(self.index.reshape(-1) == e).reshape(-1)
            out.append((pos // k, flat_w[pos]))
        return out

    def for_experts(self, e0: int, e1: int) -> "RoutedTokens":
        """The same tokens as seen by experts [e0, e1) alone, renumbered 0..e1-e0-1 (other slots -1):
        each expert keeps the very tokens, order and gate weights it has in the whole layer."""
        inside = (self.index >= e0) & (self.index < e1)
        index = torch.where(inside, self.index - e0, torch.full_like(self.index, -1))
        return RoutedTokens(self.x, index, self.weights, None if self.selection is None else self.selection[e0:e1])

    def routed_counts(self, num_experts: int) -> list[int]:
        return torch.bincount(self.index.reshape(-1), minlength=num_experts).tolist()


def _hessians(inputs: Callable[[int], torch.Tensor], gate_w: list[torch.Tensor], affinity: bool, dim: int,
              device, sel: torch.Tensor) -> torch.Tensor:
    """Hessians [len(sel), dim, dim] of experts `sel` (GPTQ asks for one chunk of experts at a time,
    so the Hessians of all experts of a layer are never held at once)."""
    H = torch.zeros(len(sel), dim, dim, device=device)
    for j, e in enumerate(sel.tolist()):
        x = inputs(e)
        if x.shape[0]:
            H[j] = hessian(x, gate_w[e] if affinity else None)
    return H


@torch.no_grad()
def quantize_routed_experts(block: MoEBlock, tokens: RoutedTokens | None, bits: torch.Tensor, scheme: Scheme,
                            state: QuantState, key_prefix: str, down_transforms: list | None = None,
                            first_expert: int = 0) -> None:
    """Quantize gate_up then down of every expert of `block` in place; record tokens/fallbacks/errors.
    `down_transforms[e]` (DuQuant) maps expert e's down input to the basis its weights were folded into.
    `first_expert`: the layer's number of the block's expert 0 (a streamed chunk), for the fallbacks."""
    group = block.experts
    n = group.num_experts
    layer = block.layer_idx
    gptq = isinstance(scheme.method, GptqConfig) and tokens is not None

    per_expert = tokens.per_expert(n) if tokens is not None else [(torch.empty(0, dtype=torch.long),) * 2] * n
    counts = [int(t.shape[0]) for t, _ in per_expert]
    if tokens is not None:
        state.tokens_per_expert[layer] = counts

    use_gptq = torch.zeros(n, dtype=torch.bool)
    H_gu = H_down = None
    if gptq:
        m: GptqConfig = scheme.method
        enough = torch.tensor([c >= m.min_tokens for c in counts])
        use_gptq = enough.clone()
        xs = [tokens.x[t] for t, _ in per_expert]
        cs = [w for _, w in per_expert]
        if m.fallback == "all_tokens":
            for e in torch.nonzero(~enough).reshape(-1).tolist():
                xs[e], cs[e] = tokens.x, torch.ones(tokens.x.shape[0], device=tokens.x.device)
            use_gptq[:] = True
        for e in torch.nonzero(~enough).reshape(-1).tolist():
            state.record_fallback(layer, first_expert + e, counts[e], f"{counts[e]} routed calibration tokens < min_tokens "
                                  f"{m.min_tokens}", m.fallback)
        H_gu = partial(_hessians, xs.__getitem__, cs, m.affinity, group.hidden_size, tokens.x.device)
    rec, err_gu, norm_gu = quantize_stacked_measured(group.gate_up(), f"{key_prefix}.{group.names[0]}", layer,
                                                     "experts_gate_up", bits, scheme, H_gu, use_gptq)
    state.add(rec)
    if gptq:
        def down_input(e: int) -> torch.Tensor:  # through the quantized gate/up, computed when its chunk is solved
            a = group.intermediate(e, xs[e]) if xs[e].shape[0] else xs[e].new_zeros(0, group.intermediate_size)
            return down_transforms[e](a) if down_transforms is not None else a

        H_down = partial(_hessians, down_input, cs, scheme.method.affinity, group.intermediate_size, tokens.x.device)
    rec, err_down, norm_down = quantize_stacked_measured(group.down(), f"{key_prefix}.{group.names[1]}", layer,
                                                         "experts_down", bits, scheme, H_down, use_gptq)
    state.add(rec)
    err, norm = err_gu + err_down, norm_gu + norm_down
    state.expert_error[layer] = (err / norm.clamp(min=1e-30)).sqrt().tolist()
