"""Calibrate and quantize a skeleton model layer by layer, writing each layer out as it is done.

The same per-layer machinery as the in-memory path (`ModelQuantizer.quantize_layer`, `run_layer`)
runs on one loaded layer at a time — its routed experts read, quantized, written and released a
chunk of experts at a time where `ChunkedLayers` allows, then read back by chunks to make the
layer's outputs; calibration activations and a one-window probe batch are
carried from layer to layer, so the probe logits of the finished model come out of the same pass.
"""

from __future__ import annotations

import logging

import torch

from moeq.quant_core.algorithms.allocation import expert_bits
from moeq.quant_core.algorithms.capture import capture_first_layer_inputs
from moeq.quant_core.algorithms.expert_access import WHOLE
from moeq.quant_core.algorithms.experts import quantize_routed_experts
from moeq.quant_core.algorithms.mixed_precision import Allocator, neuron_variance
from moeq.quant_core.context import RunContext
from moeq.quant_core.quantize import ModelQuantizer
from moeq.quant_core.quantized import QuantState
from moeq.contract.recipe import Recipe
from moeq.quant_core.streaming.chunked_access import ChunkedAccess
from moeq.quant_core.streaming.chunked_layers import ChunkedExpertQuantizer, ChunkedLayers, run_reason
from moeq.quant_core.streaming.runner import StreamRunner
from moeq.quant_core.streaming.skeleton import SkeletonModel
from moeq.quant_core.streaming.writer import StagedWriter
from moeq.quant_core.streams import reserve_windows

log = logging.getLogger(__name__)


@torch.no_grad()
def quantize_streamed(sk: SkeletonModel, tokenizer, recipe: Recipe, ctx: RunContext, device: torch.device,
                      writer: StagedWriter, probe_ids: torch.Tensor
                      ) -> tuple[QuantState, dict, torch.Tensor, ChunkedLayers]:
    """Returns (state, calibration info, probe logits of the quantized model, the layer loader used)."""
    from moeq.quant_core.pipeline import TOKENS_PER_CALIB_BATCH, calibration_windows

    moe = sk.moe
    state = QuantState()
    calib, reserve = None, None
    calib_info: dict = {"num_sequences": 0, "num_tokens": 0, "build_s": 0.0}
    if recipe.needs_calibration:
        calib, calib_info = calibration_windows(recipe, moe, tokenizer, ctx, sk.model_dir)
        bal = recipe.calibration.balance
        if bal is not None and bal.extra_samples:
            reserve, rng = reserve_windows(recipe, tokenizer, bal.extra_samples, calib.shape[1], sk.model_dir)
            calib_info["reserve_text"] = rng.record()
    alloc = recipe.allocation
    allocator = None  # router_norm / random: each layer's bits are chosen when the layer is loaded
    if alloc is None or alloc.method == "uniform":
        bits = expert_bits(moe, recipe, sk.model_dir, state)
    else:
        bits, allocator = {}, Allocator(moe, alloc, sk.model_dir)
    quantizer = ModelQuantizer(moe, recipe, ctx, state, device, bits)
    batch = max(1, TOKENS_PER_CALIB_BATCH // recipe.calibration.seq_len)
    batches = None
    if calib is not None:
        ctx.progress("calibrate: capture layer-0 inputs", 0.0)
        batches = capture_first_layer_inputs(moe, calib, batch, device)
        quantizer.n_main = len(batches)
        if reserve is not None and reserve.shape[0]:
            batches += capture_first_layer_inputs(moe, reserve, batch, device)
    probe = capture_first_layer_inputs(moe, probe_ids, probe_ids.shape[0], device)
    layers = ChunkedLayers(sk, ctx.stream_chunk_experts, device, hessians=quantizer.gptq, run_reason=run_reason(quantizer),
                           whole_when_fits=quantizer.use_kernels)
    n = len(moe.layers)
    for i in range(n):
        ctx.check_cancel()
        ctx.progress(f"quantize: layer {i + 1}/{n}", i / n)
        layer, chunks = layers.load(i)
        access = WHOLE if chunks is None else ChunkedAccess(layers, i, chunks)
        if allocator is not None and i in moe.blocks:
            variance = None  # router_norm's variance guard reads every expert's gate rows: by chunks
            if chunks is not None and allocator.needs_expert_weights:
                variance = torch.cat([neuron_variance(moe, i) for _ in access.chunks(moe.blocks[i])])
            bits[i] = allocator.layer(i, variance)
        quantizer.expert_access = access  # how smoothing / DuQuant reach the experts: chunk by chunk
        quantizer.routed_experts_fn = (quantize_routed_experts if chunks is None
                                       else ChunkedExpertQuantizer(access, writer))
        quantizer.quantize_layer(i, layer, batches)
        carried = (batches or []) + probe  # the quantized layer's outputs: its chunks are read back as written
        out = layers.forward(i, layer, carried, chunks, writer.layer_source(i) if chunks else None)
        batches, probe = (None if batches is None else out[:len(batches)]), out[len(carried) - len(probe):]
        writer.write_layer(i, state)
        sk.release_layer(i)
    if allocator is not None:
        allocator.record(state, bits)
    ctx.progress("quantize: done", 1.0)
    logits = StreamRunner(sk, sk.source, device).head(probe[0].hidden).float().cpu()
    return state, calib_info, logits, layers
