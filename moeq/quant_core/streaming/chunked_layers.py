"""Which streamed layers load their routed experts by chunks, how large the chunks are, and the
two places chunks are used: the forward pass of a layer over many batches (evaluation, and the
next layer's calibration inputs) and the quantization of a layer's routed experts.

A layer is loaded whole when it cannot be chunked (a dense layer, experts stored in no chunkable
layout, experts called with sorted tokens), when the run forces packed kernels
(`kernels="triton"`: they need every expert's codes at once), or when a layer-stage technique does
not declare that it reaches the experts through `ExpertAccess`; with `kernels="auto"` on a GPU a
layer whose chunk would hold all its experts is loaded whole so its packed kernel can be built.
Smoothing, DuQuant and EAQuant's transforms, and activation quantization, work on chunks
(chunked_access.py, `QuantExperts.accumulate`). Each layer loaded whole is recorded with its
reason, and where memory would have called for chunks a warning is logged and kept in the result:
the run never exceeds its chunk budget silently.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from moeq.quant_core.algorithms.capture import LayerBatch, run_layer
from moeq.quant_core.algorithms.experts import RoutedTokens, quantize_routed_experts
from moeq.quant_core.algorithms.weights import Scheme
from moeq.quant_core.functional.affine import QuantParams
from moeq.quant_core.quantized import QuantState, WeightRecord
from moeq.quant_core.streaming.chunk_size import chunk_experts, expert_working_bytes, ranges
from moeq.quant_core.streaming.chunked_access import ChunkedAccess
from moeq.quant_core.streaming.chunked_forward import run_layer_chunked
from moeq.quant_core.streaming.expert_chunks import (chunk_unavailable_reason, full_count, load_experts,
                                                     load_layer_shell, release_experts)
from moeq.quant_core.streaming.scaled_input_chunks import chunk_adder
from moeq.quant_core.streaming.skeleton import LayerSource, SkeletonModel

log = logging.getLogger(__name__)


class ChunkedLayers:
    """Loads and runs a skeleton's layers, routed experts by chunks where it can (see module doc)."""

    def __init__(self, sk: SkeletonModel, setting, device: torch.device, hessians: bool = False,
                 run_reason: str | None = None, whole_when_fits: bool = False) -> None:
        self.sk, self.setting, self.device, self.hessians = sk, setting, device, hessians
        self.run_reason = run_reason  # why no layer of this run may be chunked, or None
        self.whole_when_fits = whole_when_fits  # load whole when one chunk would hold every expert
        self.sizes: dict[int, int] = {}  # layer → experts per chunk (the last plan made)
        self.whole: dict[int, str] = {}  # layer → why it was loaded whole
        self.warnings: list[str] = []

    def _per_expert_bytes(self, i: int) -> int:
        group = self.sk.moe.blocks[i].experts  # meta or chunk-sized: the per-expert shapes are the same
        gu, down = group.gate_up().shape, group.down().shape
        params = gu[1] * gu[2] + down[1] * down[2]
        return expert_working_bytes(params, group.hidden_size, group.intermediate_size, self.hessians)

    def load(self, i: int, source: LayerSource | None = None) -> tuple[nn.Module, list[tuple[int, int]] | None]:
        """Layer i (without its routed experts when chunked) and its chunks (None: loaded whole)."""
        source = source or self.sk.source
        block = self.sk.moe.blocks.get(i)
        reason = self.run_reason or chunk_unavailable_reason(self.sk, i, source)
        if reason is not None:
            if block is not None:
                self._whole(i, reason)
            return self.sk.load_layer(i, source, self.device), None
        n = full_count(block.experts.module)
        if self.whole_when_fits and chunk_experts(self.setting, n, self._per_expert_bytes(i), self.device) >= n:
            self.whole[i] = "packed kernels, and memory for every expert"
            return self.sk.load_layer(i, source, self.device), None
        layer = load_layer_shell(self.sk, i, source, self.device)  # the free memory is measured after it
        size = chunk_experts(self.setting, n, self._per_expert_bytes(i), self.device)
        self.sizes[i] = size
        return layer, ranges(n, size)

    def _whole(self, i: int, reason: str) -> None:
        self.whole[i] = reason
        n = self.sk.moe.blocks[i].experts.num_experts  # loaded whole: its shapes are the full count
        if chunk_experts(self.setting, n, self._per_expert_bytes(i), self.device) < n:
            msg = (f"layer {i} loaded whole ({reason}) although the memory budget asks for chunks of fewer "
                   f"than its {n} experts")
            if msg not in self.warnings:
                log.warning(msg)
                self.warnings.append(msg)

    def forward(self, i: int, layer: nn.Module, batches: list[LayerBatch], chunks: list[tuple[int, int]] | None,
                source: LayerSource) -> list[LayerBatch]:
        """Layer i's outputs for every batch, its experts read from `source` chunk by chunk."""
        if chunks is None:
            return run_layer(layer, batches)
        block = self.sk.moe.blocks[i]
        spec = self.sk.moe.spec
        return run_layer_chunked(layer, block.block, spec.router, spec.experts, batches, chunks,
                                 lambda e0, e1: load_experts(self.sk, i, e0, e1, source, self.device),
                                 lambda: release_experts(self.sk, i), chunk_adder(spec.expert_call))

    def record(self) -> dict:
        """For the result: the setting, the chunk sizes used and the layers loaded whole (and why)."""
        sizes = sorted(set(self.sizes.values()))
        return {"setting": self.setting, "chunked_layers": len(self.sizes), "experts_per_chunk": sizes,
                "whole_layers": {str(i): r for i, r in sorted(self.whole.items())}}


def run_reason(quantizer) -> str | None:
    """Why a run's quantized layers need all their experts at once (None: they can be chunked)."""
    whole = [type(h).__name__ for h in quantizer.hooks if not h.chunked_experts]
    if whole:
        return f"layer-stage technique {whole[0]} reaches the experts only all at once"
    if quantizer.use_kernels and quantizer.ctx.kernels != "auto":
        return f"packed kernels (kernels={quantizer.ctx.kernels!r}) need every expert's codes"
    return None


class ChunkedExpertQuantizer:
    """`quantize_routed_experts` for a layer loaded without its experts: each chunk is read,
    quantized (every expert with its own tokens, bits and Hessians, as in the whole layer),
    written and released; the records are then joined as the whole layer's would be."""

    def __init__(self, access: ChunkedAccess, writer) -> None:
        self.access, self.writer = access, writer

    def __call__(self, block, tokens: RoutedTokens | None, bits: torch.Tensor, scheme: Scheme, state: QuantState,
                 key_prefix: str, down_transforms: list | None = None) -> None:
        i = block.layer_idx
        parts = []
        for e0, e1 in self.access.ranges:
            module = self.access.load(e0, e1)  # with the layer-stage techniques' rewrites replayed
            part = QuantState()
            quantize_routed_experts(block, None if tokens is None else tokens.for_experts(e0, e1), bits[e0:e1],
                                    scheme, part, key_prefix,
                                    None if down_transforms is None else down_transforms[e0:e1], first_expert=e0)
            self.writer.write_expert_chunk(i, e0, module, key_prefix, part)
            del module
            self.access.release()
            parts.append((e0, part))
        join_chunks(state, i, parts)


def join_chunks(state: QuantState, layer: int, parts: list[tuple[int, QuantState]]) -> None:
    """Add the chunks' records (tensors already written: shapes only) and statistics to `state` as
    one layer's."""
    for key, first in parts[0][1].records.items():
        recs = [p.records[key] for _, p in parts]
        meta = lambda ts: torch.empty(sum(t.shape[0] for t in ts), *ts[0].shape[1:], dtype=ts[0].dtype,  # noqa: E731
                                      device="meta")
        params = QuantParams(meta([r.params.scale for r in recs]), meta([r.params.zero for r in recs]),
                             torch.cat([r.params.bits.reshape(-1) for r in recs]), first.params.group_size,
                             first.params.symmetric)
        state.add(WeightRecord(key, first.role, first.layer, meta([r.codes for r in recs]), params))
    for _, part in parts:
        state.fallbacks.extend(part.fallbacks)  # numbered in the layer already
    if layer in parts[0][1].tokens_per_expert:
        state.tokens_per_expert[layer] = [c for _, p in parts for c in p.tokens_per_expert[layer]]
    state.expert_error[layer] = [x for _, p in parts for x in p.expert_error[layer]]
