"""How many routed experts a streamed layer loads at a time: the recipe's run context may fix it
(`RunContext.stream_chunk_experts`, an integer); "auto" sizes it from the memory the process may
still take when the layer is loaded (host: `free_memory_bytes`, the cgroup limit minus its charge
or `MemAvailable`; device: CUDA's free memory) so that one chunk's working set — COPIES float32
copies of the expert's weights and, for GPTQ, of its two Hessians — stays within SHARE of it, the
rest left to activations and the allocator (measured: benchmarks/chunk_memory.py, docs/streaming.md
"What bounds memory")."""

from __future__ import annotations

import logging

import torch

from moeq.contract.errors import RecipeError
from moeq.quant_core.streaming.host_memory import free_memory_bytes

log = logging.getLogger(__name__)
# float32 copies per expert, rounded up from the measured working set (benchmarks/RESULTS.md, "Per-expert
# working set"): weights read + converted (2.2 copies for a float32 checkpoint, 1.3 for bf16), and
# GPTQ's largest Hessian held three times (itself, its inverse, the inverse's Cholesky factor)
COPIES = 3
SHARE = 0.5  # of the free memory, for one chunk


def expert_working_bytes(params: int, hidden: int, intermediate: int, hessians: bool) -> int:
    """Bytes one routed expert needs while its chunk is processed."""
    return COPIES * 4 * (params + (hidden * hidden + intermediate * intermediate if hessians else 0))


def parse_chunk_setting(value) -> int | None:
    """None for "auto", else the positive integer asked for; anything else is one clear error."""
    if value in (None, "auto"):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RecipeError("stream_chunk_experts", f"must be 'auto' or a positive integer, got {value!r}")
    return value


def chunk_experts(setting, num_experts: int, per_expert_bytes: int, device: torch.device) -> int:
    """Experts per chunk for a layer of `num_experts`, each needing `per_expert_bytes`."""
    fixed = parse_chunk_setting(setting)
    if fixed is not None:
        return min(fixed, num_experts)
    free = [x for x in (free_memory_bytes(),) if x is not None]
    if device.type == "cuda":
        free.append(torch.cuda.mem_get_info(device)[0])
    if not free:
        return num_experts
    return max(1, min(num_experts, int(SHARE * min(free)) // max(1, per_expert_bytes)))


def ranges(num_experts: int, size: int) -> list[tuple[int, int]]:
    return [(e, min(e + size, num_experts)) for e in range(0, num_experts, size)]
