"""Launch configurations of the fused MoE kernel per shape class (data, not code).

A shape class is (regime, hidden size bucket): regime "decode" for ≤ 16 tokens (few rows per expert: small
BLOCK_M, split-K so that enough CTAs stream the weights), "prefill" above. These are starting points chosen from
the static SASS check (tests/kernels/test_static_sass.py); they are not GPU-tuned until RESULTS.md records a run.
"""

from __future__ import annotations

from dataclasses import dataclass

DECODE_MAX_TOKENS = 16


@dataclass(frozen=True)
class MoeConfig:
    block_m: int
    block_n: int
    block_k: int
    split_k: int
    num_warps: int
    num_stages: int


CONFIGS = {
    # regime: (config for K ≥ 2048, config for smaller K)
    "decode": (MoeConfig(16, 128, 128, 4, 4, 3), MoeConfig(16, 64, 64, 1, 4, 2)),
    "prefill": (MoeConfig(64, 64, 64, 1, 4, 3), MoeConfig(32, 64, 32, 1, 4, 2)),
}


def regime(tokens: int) -> str:
    return "decode" if tokens <= DECODE_MAX_TOKENS else "prefill"


def shape_class(tokens: int, hidden: int, inter: int, num_experts: int, top_k: int) -> str:
    """The key RESULTS.md and the proven-kernel table use: regime and the layer's dimensions."""
    return f"moe:{regime(tokens)}:d{hidden}:i{inter}:e{num_experts}:k{top_k}"


def pick(tokens: int, k: int, group_size: int) -> MoeConfig:
    big, small = CONFIGS[regime(tokens)]
    cfg = big if k >= 2048 else small
    bk = cfg.block_k
    # a K tile must lie inside one quantization group (scales are applied once per tile)
    while bk > 32 and group_size % bk and group_size != k:
        bk //= 2
    split = cfg.split_k
    while split > 1 and k // split < bk:
        split //= 2
    return MoeConfig(cfg.block_m, cfg.block_n, bk, split, cfg.num_warps, cfg.num_stages)
