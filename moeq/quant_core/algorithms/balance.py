"""EAQuant calibration balance: every expert gets about T = r·k·N/n routed calibration tokens.

Experts over T keep a subset of T (highest gate weight, or random); experts under T are topped up
with a random sample of the tokens routed to them from reserve calibration sequences (propagated through the quantized
layers like the main set). r = 0 disables balancing. Counts before/after are recorded.
See docs/methods.md "EAQuant".
"""

from __future__ import annotations

import torch

from moeq.quant_core.algorithms.experts import RoutedTokens
from moeq.quant_core.quantized import QuantState
from moeq.contract.recipe import BalanceSpec


def _pick(pos: torch.Tensor, weights: torch.Tensor, count: int, select: str, gen: torch.Generator) -> torch.Tensor:
    if pos.numel() <= count:
        return pos
    if select == "random":
        return pos[torch.randperm(pos.numel(), generator=gen)[:count]]
    return pos[torch.topk(weights, count).indices]


def balance_tokens(tokens: RoutedTokens, n_main: int, num_experts: int, spec: BalanceSpec, state: QuantState,
                   layer: int, seed: int = 0) -> RoutedTokens:
    """Return `tokens` with a per-expert selection of (token, slot) positions."""
    k = tokens.index.shape[1]
    flat_idx = tokens.index.reshape(-1)
    flat_w = tokens.weights.reshape(-1)
    token_of = torch.arange(flat_idx.numel(), device=flat_idx.device) // k
    is_main = token_of < n_main
    if spec.r <= 0:
        selection = [torch.nonzero((flat_idx == e) & is_main).reshape(-1) for e in range(num_experts)]
        return RoutedTokens(tokens.x, tokens.index, tokens.weights, selection)
    target = max(1, int(round(spec.r * k * n_main / num_experts)))
    gen = torch.Generator().manual_seed(seed + layer)
    selection, before, after = [], [], []
    for e in range(num_experts):
        main_pos = torch.nonzero((flat_idx == e) & is_main).reshape(-1)
        chosen = _pick(main_pos, flat_w[main_pos], target, spec.select, gen)
        if chosen.numel() < target:
            extra = torch.nonzero((flat_idx == e) & ~is_main).reshape(-1)
            # top-up: an unbiased sample of the reserve tokens routed to this expert
            chosen = torch.cat([chosen, _pick(extra, flat_w[extra], target - chosen.numel(), "random", gen)])
        selection.append(chosen)
        before.append(int(main_pos.numel()))
        after.append(int(chosen.numel()))
    state.diagnostics.setdefault("balance", {})[str(layer)] = {"target": target, "before": before, "after": after}
    return RoutedTokens(tokens.x, tokens.index, tokens.weights, selection)
