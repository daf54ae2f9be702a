"""Launch configurations of the fused MoE kernel per shape class (data, not code).

A shape class is (regime, hidden size bucket): regime "decode" for ≤ 16 tokens (few rows per expert: small
BLOCK_M, split-K so that enough CTAs stream the weights), "prefill" above. These are starting points chosen from
the static SASS check (python -m moeq.kernels.static_check: fewest issued instructions per weight KB or per MAC with every
weight word in a 128-bit load and no register spills); they are not GPU-tuned until RESULTS.md records a run.
"""

from __future__ import annotations

from dataclasses import dataclass

DECODE_MAX_TOKENS = 16


@dataclass(frozen=True)
class MoeConfig:
    block_m: int
    block_n: int
    split_k: int  # K is cut into at most this many slices (each a multiple of every width's K step)
    num_warps: int
    num_stages: int


CONFIGS = {
    # regime: (config for K ≥ 2048, config for smaller K)
    "decode": (MoeConfig(16, 128, 4, 8, 3), MoeConfig(16, 64, 1, 4, 2)),
    "prefill": (MoeConfig(64, 128, 1, 8, 3), MoeConfig(64, 64, 1, 4, 3)),
}


def regime(tokens: int) -> str:
    return "decode" if tokens <= DECODE_MAX_TOKENS else "prefill"


def shape_class(tokens: int, hidden: int, inter: int, num_experts: int, top_k: int) -> str:
    """The key RESULTS.md and the proven-kernel table use: regime and the layer's dimensions."""
    return f"moe:{regime(tokens)}:d{hidden}:i{inter}:e{num_experts}:k{top_k}"


def pick(tokens: int, k: int) -> MoeConfig:
    """The shape class's config (the kernel's K step is per width: moeq.kernels.moe_layout.k_step)."""
    big, small = CONFIGS[regime(tokens)]
    return big if k >= 2048 else small
