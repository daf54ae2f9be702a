"""Layer-stage techniques (smoothing, DuQuant, EAQuant) on a streamed layer whose routed experts are
read a chunk at a time (see moeq.quant_core.algorithms.expert_access).

Each statistic a technique takes of the experts' weights is read chunk by chunk from the source
checkpoint; each rewrite it makes is kept, in order, and replayed on every chunk loaded afterwards
— by later statistics and by the quantizer, which then writes the rewritten, quantized chunk. The
weights a chunk holds when it is quantized are therefore those the whole layer would hold in memory.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from moeq.quant_core.algorithms.expert_access import Edit, ExpertAccess
from moeq.quant_core.streaming.expert_chunks import full_count, load_experts, release_experts


class ChunkedAccess(ExpertAccess):
    """Layer i's routed experts, chunk by chunk (`ranges`), from the skeleton's source checkpoint."""

    def __init__(self, layers, i: int, ranges: list[tuple[int, int]]) -> None:
        self.layers, self.i, self.ranges = layers, i, ranges
        self.n = full_count(layers.sk.moe.blocks[i].experts.module)
        self.edits: list[Edit] = []

    def count(self, block) -> int:
        return self.n

    def load(self, e0: int, e1: int) -> nn.Module:
        """Experts [e0, e1) read and rewritten by every edit made so far, in order."""
        module = load_experts(self.layers.sk, self.i, e0, e1, device=self.layers.device)
        for fn in self.edits:
            fn(e0, e1)
        return module

    def release(self) -> None:
        release_experts(self.layers.sk, self.i)

    def chunks(self, block) -> Iterator[tuple[int, int]]:
        for e0, e1 in self.ranges:
            self.load(e0, e1)
            try:
                yield e0, e1
            finally:
                self.release()

    def edit(self, block, fn: Edit) -> None:
        self.edits.append(fn)
