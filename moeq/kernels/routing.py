"""Routing alignment on the device: (token, slot) pairs sorted by expert, each expert's run padded to BLOCK_M.

One pass per layer, shared by the gate_up and the down launch. Only fixed-shape tensor ops (no `nonzero`, no
`.item()`, no Python loop over experts), so it never waits on the device and can be captured in a CUDA graph:
the number of blocks is the worst case for (pairs, experts, BLOCK_M), and blocks past the real ones carry
expert −1 and exit at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Routing:
    sorted_pairs: torch.Tensor  # int32 [n_blocks·block_m]: pair id (t·top_k + j), n_pairs for padding
    block_expert: torch.Tensor  # int32 [n_blocks]: expert of each block, −1 past the last real block
    n_pairs: int
    block_m: int

    @property
    def n_blocks(self) -> int:
        return self.block_expert.numel()


def max_blocks(n_pairs: int, num_experts: int, block_m: int) -> int:
    """Upper bound on blocks: every non-empty expert (at most min(E, pairs) of them) wastes < block_m rows."""
    return -(-(n_pairs + min(num_experts, n_pairs) * (block_m - 1)) // block_m)


def align_routing(top_k_index: torch.Tensor, num_experts: int, block_m: int) -> Routing:
    flat = top_k_index.reshape(-1).long()
    n_pairs = flat.numel()
    dev = flat.device
    counts = torch.zeros(num_experts, dtype=torch.int64, device=dev).scatter_add_(0, flat, torch.ones_like(flat))
    padded = (counts + block_m - 1) // block_m * block_m
    ends = padded.cumsum(0)
    starts = ends - padded
    first = counts.cumsum(0) - counts  # where each expert begins in the sorted (unpadded) order
    order = torch.argsort(flat, stable=True)
    sorted_e = flat[order]
    dest = starts[sorted_e] + torch.arange(n_pairs, device=dev) - first[sorted_e]
    n_blocks = max_blocks(n_pairs, num_experts, block_m)
    sorted_pairs = torch.full((n_blocks * block_m,), n_pairs, dtype=torch.int32, device=dev)
    sorted_pairs[dest] = order.to(torch.int32)
    block_start = torch.arange(n_blocks, device=dev) * block_m
    block_expert = torch.searchsorted(ends, block_start, right=True)
    block_expert = torch.where(block_expert < num_experts, block_expert, -1).to(torch.int32)
    return Routing(sorted_pairs, block_expert, n_pairs, block_m)
