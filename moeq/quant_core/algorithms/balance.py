"""EAQuant calibration balance: every expert gets at most (about) T routed calibration tokens.

T = r·k·N/n over the N calibration tokens (cap "total", moeq's), or the authors' `expert_token_num`
int(k/n · seq_len · r) (cap "sequence"). Experts over T keep a subset of T (highest gate weight, random,
or the first T in calibration order, as the authors' input cache does); with cap "total", experts under T
are topped up with a random sample of the tokens routed to them from reserve calibration sequences
(propagated through the quantized layers like the main set). r = 0 disables balancing. Counts
before/after are recorded. See docs/methods.md "EAQuant".
"""

from __future__ import annotations

import torch

from moeq.quant_core.algorithms.experts import RoutedTokens
from moeq.quant_core.quantized import QuantState
from moeq.contract.recipe import BalanceSpec


def expert_token_cap(top_k: int, num_experts: int, seq_len: int, r: float) -> int:
    """The authors' per-expert token cap: int(k/n · seq_len · r) (OLMoE, 8 of 64, 4096, 2.0 → 1024)."""
    return int(top_k / num_experts * seq_len * r)


def _pick(pos: torch.Tensor, weights: torch.Tensor, count: int, select: str, gen: torch.Generator) -> torch.Tensor:
    if pos.numel() <= count:
        return pos
    if select == "first":  # positions are in calibration order (token-major)
        return pos[:count]
    if select == "random":
        return pos[torch.randperm(pos.numel(), generator=gen)[:count]]
    return pos[torch.topk(weights, count).indices]


def balance_tokens(tokens: RoutedTokens, n_main: int, num_experts: int, spec: BalanceSpec, state: QuantState,
                   layer: int, seed: int = 0, seq_len: int | None = None) -> RoutedTokens:
    """Return `tokens` with a per-expert selection of (token, slot) positions."""
    k = tokens.index.shape[1]
    flat_idx = tokens.index.reshape(-1)
    flat_w = tokens.weights.reshape(-1)
    token_of = torch.arange(flat_idx.numel(), device=flat_idx.device) // k
    is_main = token_of < n_main
    if spec.r <= 0:
        selection = [torch.nonzero((flat_idx == e) & is_main).reshape(-1) for e in range(num_experts)]
        return RoutedTokens(tokens.x, tokens.index, tokens.weights, selection)
    if spec.cap == "sequence":
        if seq_len is None:
            raise ValueError("balance cap 'sequence' needs the calibration sequence length")
        target = max(1, expert_token_cap(k, num_experts, seq_len, spec.r))
    else:
        target = max(1, int(round(spec.r * k * n_main / num_experts)))
    gen = torch.Generator().manual_seed(seed + layer)
    selection, before, after = [], [], []
    for e in range(num_experts):
        main_pos = torch.nonzero((flat_idx == e) & is_main).reshape(-1)
        chosen = _pick(main_pos, flat_w[main_pos], target, spec.select, gen)
        if chosen.numel() < target and spec.cap == "total":
            extra = torch.nonzero((flat_idx == e) & ~is_main).reshape(-1)
            # top-up: an unbiased sample of the reserve tokens routed to this expert
            chosen = torch.cat([chosen, _pick(extra, flat_w[extra], target - chosen.numel(), "random", gen)])
        selection.append(chosen)
        before.append(int(main_pos.numel()))
        after.append(int(chosen.numel()))
    state.diagnostics.setdefault("balance", {})[str(layer)] = {"target": target, "cap": spec.cap, "before": before,
                                                             "after": after}
    return RoutedTokens(tokens.x, tokens.index, tokens.weights, selection)
