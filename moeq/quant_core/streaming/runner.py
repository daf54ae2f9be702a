"""Run many token batches through a skeleton model whose layers are read one at a time.

`StreamRunner.forward_many(batches, consume)` embeds every batch, then loads layer 0, runs all
batches through it, releases it, loads layer 1, ... and finally applies the final norm and the
head, handing each batch's logits to `consume` in order. Batches whose hidden states would exceed
`max_state_bytes` together are split into several passes (each pass reads the layers again).
The arithmetic per batch is the model's own forward, so the logits equal an in-memory run's; a
layer's routed experts may be read a chunk at a time (`ChunkedLayers`), with the same outputs.
"""

from __future__ import annotations

import logging

import torch

from moeq.quant_core.algorithms.capture import LayerBatch, capture_first_layer_inputs, run_layer
from moeq.quant_core.streaming.chunked_layers import ChunkedLayers
from moeq.quant_core.evaluate.forward import Consume
from moeq.quant_core.streaming.skeleton import LayerSource, SkeletonModel

log = logging.getLogger(__name__)


def state_bytes(ids: torch.Tensor, hidden: int, itemsize: int) -> int:
    """Rough bytes a batch holds between layers: hidden states (twice, in and out) plus a mask."""
    b, s = ids.shape
    return 2 * b * s * hidden * itemsize + b * s * s


class StreamRunner:
    def __init__(self, sk: SkeletonModel, source: LayerSource, device: torch.device,
                 max_state_bytes: int = 2 * 2**30, check_cancel=None, layers: ChunkedLayers | None = None) -> None:
        self.sk, self.source, self.device = sk, source, device
        self.layers = layers  # loads layers, routed experts by chunks where it can; None: every layer whole
        self.check_cancel = check_cancel  # called before each layer (a run can be cancelled mid-pass)
        self.max_state_bytes = max_state_bytes
        self.passes = 0

    @property
    def config(self):
        return self.sk.model.config

    def _chunks(self, batches: list[torch.Tensor]) -> list[list[int]]:
        hidden, itemsize = self.config.hidden_size, self.sk.dtype.itemsize
        chunks, cur, used = [], [], 0
        for j, ids in enumerate(batches):
            need = state_bytes(ids, hidden, itemsize)
            if cur and used + need > self.max_state_bytes:
                chunks.append(cur)
                cur, used = [], 0
            cur.append(j)
            used += need
        if cur:
            chunks.append(cur)
        return chunks

    @torch.no_grad()
    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        moe = self.sk.moe
        return moe.lm_head()(moe.final_norm()(hidden))

    @torch.no_grad()
    def forward_many(self, batches: list[torch.Tensor], consume: Consume) -> None:
        moe = self.sk.moe
        for chunk in self._chunks(batches):
            self.passes += 1
            states: list[LayerBatch] = []
            for j in chunk:
                states += capture_first_layer_inputs(moe, batches[j], batches[j].shape[0], self.device)
            for i in range(len(moe.layers)):
                if self.check_cancel is not None:
                    self.check_cancel()
                if self.layers is None:
                    states = run_layer(self.sk.load_layer(i, self.source, self.device), states)
                else:
                    layer, chunks = self.layers.load(i, self.source)
                    states = self.layers.forward(i, layer, states, chunks, self.source)
                self.sk.release_layer(i)
            for j, st in zip(chunk, states):
                consume(j, self.head(st.hidden))
            del states
