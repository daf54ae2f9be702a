"""How a layer-stage technique reaches a block's routed experts.

Smoothing, DuQuant and EAQuant read statistics of every expert's weights and rewrite them (fold a
factor or a transform). In memory every expert is loaded: `chunks` yields the whole range once and
`edit` rewrites the weights at once. A streamed run that loads a layer's experts a chunk at a time
(`moeq.quant_core.streaming.chunked_access.ChunkedAccess`) yields one loaded chunk after another and
keeps each edit, replaying the edits in order on every chunk it loads afterwards (to quantize it),
so the techniques see the same weights either way. A technique written against this interface
touches the experts only inside `chunks` or `edit`, through `block.experts` numbered from the
chunk's first expert (`local = e - e0`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

Edit = Callable[[int, int], None]  # rewrites the loaded experts [e0, e1) of the block, in place


class ExpertAccess:
    """Every expert of the block is in memory (the default)."""

    def count(self, block) -> int:
        """The block's number of routed experts (a loaded chunk's module holds fewer)."""
        return block.num_experts

    def chunks(self, block) -> Iterator[tuple[int, int]]:
        """Yields (e0, e1) with `block.experts` holding experts [e0, e1) as 0..e1-e0-1."""
        yield 0, block.num_experts

    def edit(self, block, fn: Edit) -> None:
        """Rewrite every expert's weights with `fn(e0, e1)` (now, and on any later load)."""
        fn(0, block.num_experts)


WHOLE = ExpertAccess()


def each_expert(access: ExpertAccess, block, fn: Callable[[int, int], None]) -> None:
    """`fn(e, local)` for every expert e of the block, its chunk loaded (local: its index in it)."""
    for e0, e1 in access.chunks(block):
        for e in range(e0, e1):
            fn(e, e - e0)


def edit_each(access: ExpertAccess, block, fn: Callable[[int, int], None]) -> None:
    """An edit made expert by expert: `fn(e, local)` rewrites expert e of the loaded chunk."""
    def edit(e0: int, e1: int) -> None:
        for e in range(e0, e1):
            fn(e, e - e0)
    access.edit(block, edit)
