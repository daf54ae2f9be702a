"""How evaluators get logits for a list of token batches.

An in-memory model runs one batch at a time. A model whose layers are streamed from disk offers
`forward_many(batches, consume)`, which runs all batches through each layer before loading the
next one; `consume(j, logits)` receives batch j's logits either way, in batch order.
"""

from __future__ import annotations

from typing import Callable

import torch

Consume = Callable[[int, torch.Tensor], None]


def forward_many(model, batches: list[torch.Tensor], consume: Consume, device) -> None:
    streamed = getattr(model, "forward_many", None)
    if streamed is not None:
        streamed(batches, consume)
        return
    for j, ids in enumerate(batches):
        consume(j, model(input_ids=ids.to(device), use_cache=False).logits)
