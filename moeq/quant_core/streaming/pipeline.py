"""A run whose model never has to fit in memory: skeleton + one layer at a time, for every stage.

Same stages, seeds and arithmetic as `moeq.quant_core.pipeline.run_pipeline` (so the metrics are the
same numbers): FP reference evaluation (streamed, cached on disk per model and eval settings),
layer-by-layer calibration and quantization writing each layer out, evaluation of the quantized
model streamed from the layers just written, then the staging directory is published atomically.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from moeq.quant_core.context import ProgressFn, RunContext, sub_progress
from moeq.contract.errors import RecipeError
from moeq.quant_core.evaluate.run import EvalResult, cached_fp_evaluation
from moeq.quant_core.memory import StagePeaks, release_large_blocks_promptly
from moeq.quant_core.model_io import check_loadable, pick_device, resolve_model
from moeq.contract.recipe import EvalSpec, Recipe
from moeq.quant_core.result import build_result
from moeq.quant_core.streaming.checkpoint import Checkpoint
from moeq.quant_core.streaming.chunk_size import parse_chunk_setting
from moeq.quant_core.streaming.chunked_layers import ChunkedLayers
from moeq.quant_core.streaming.runner import StreamRunner
from moeq.quant_core.streaming.skeleton import LayerSource, SkeletonModel
from moeq.contract.techniques import RotationConfig
from moeq.quant_core.validate import validate_for_model

log = logging.getLogger(__name__)
STATE_BUDGET_BYTES = 2 * 2**30  # activations held between layers during a streamed evaluation pass


def check_streamable(recipe: Recipe) -> None:
    """Recipe features that need the whole model at once are refused with the key to change."""
    if recipe.calibration.sampler == "ebss":
        raise RecipeError("calibration.sampler", "EBSS generates from the whole model; streamed runs use 'uniform'")
    if recipe.technique(RotationConfig) is not None:
        raise RecipeError("techniques", "'rotation' is not available in streamed runs yet")



def evaluate_streamed(sk: SkeletonModel, source: LayerSource, tokenizer, windows: torch.Tensor, tasks,
                      spec: EvalSpec, device: torch.device, progress: ProgressFn, check_cancel=None,
                      layers: ChunkedLayers | None = None) -> EvalResult:
    """`evaluate_model` with every forward pass streamed layer by layer from `source` (routed experts
    by chunks through `layers`)."""
    from moeq.quant_core.evaluate.probe import probe
    from moeq.quant_core.evaluate.tasks import score_tasks

    t0 = time.perf_counter()
    runner = StreamRunner(sk, source, device, STATE_BUDGET_BYTES, check_cancel, layers)
    p = probe(sk.moe, windows, kl_tokens=spec.kl_tokens, routing=spec.routing, device=device,
              progress=lambda s, f: progress(s, 0.5 * f), runner=runner)
    scores = score_tasks(runner, tokenizer, tasks, device, progress=lambda s, f: progress(s, 0.5 + 0.5 * f))
    harness = [t[len("lm_eval:"):] for t in spec.tasks if t.startswith("lm_eval:")]
    if harness:
        from moeq.quant_core.evaluate.lm_eval_adapter import run_lm_eval

        progress("evaluate: lm-eval tasks", 0.9)
        scores += run_lm_eval(runner, tokenizer, harness, device, spec.limit, spec.lm_eval_include)
    log.info("streamed evaluation: %d passes over the layers", runner.passes)
    return EvalResult(p, scores, time.perf_counter() - t0)


def run_streamed(recipe: Recipe, ctx: RunContext) -> dict:
    from transformers import AutoTokenizer

    from moeq.quant_core.streaming.quantize import quantize_streamed
    from moeq.quant_core.streams import evaluation_tasks, evaluation_windows
    from moeq.quant_core.text_ranges import range_warnings, text_ranges
    from moeq.quant_core.streaming.writer import StagedWriter

    timings: dict[str, float] = {}
    t = time.perf_counter()
    device = pick_device(ctx.device)
    parse_chunk_setting(ctx.stream_chunk_experts)
    release_large_blocks_promptly()  # a layer's temporaries go back to the OS, not into a fragmented heap
    stages = StagePeaks(device)
    with stages.stage("load"):
        ctx.progress("load model", 0.0)
        path = resolve_model(recipe.model, ctx)
        info = check_loadable(path, ctx)
        check_streamable(recipe)
        sk = SkeletonModel(path, ctx.allow_remote_code, eager_experts=device.type == "cpu")
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=ctx.allow_remote_code)
        validate_for_model(recipe, sk.moe)
        sk.outer_to(device)
        torch.manual_seed(recipe.seed)
        ev = recipe.eval
        windows, eval_check = evaluation_windows(ev, tokenizer, path)  # the seed policy every run shares
        tasks = evaluation_tasks(ev)
    timings["load_s"] = time.perf_counter() - t

    t = time.perf_counter()
    fp_layers = ChunkedLayers(sk, ctx.stream_chunk_experts, device)
    with stages.stage("fp_evaluate"):
        fp = cached_fp_evaluation(Path(ctx.cache_dir) / "streamed", path, ev, recipe.seed, device, lambda: evaluate_streamed(
            sk, sk.source, tokenizer, windows, tasks, ev, device, sub_progress(ctx.progress, 0.02, 0.2),
            ctx.check_cancel, fp_layers))
    timings["fp_evaluate_s"] = time.perf_counter() - t
    ctx.check_cancel()

    writer = StagedWriter(sk, ctx.save_dir, Path(ctx.cache_dir) / "staging")
    try:
        t = time.perf_counter()
        with stages.stage("quantize"):
            state, calib_info, probe_logits, q_layers = quantize_streamed(
                sk, tokenizer, recipe, ctx.with_progress(sub_progress(ctx.progress, 0.2, 0.75)), device, writer,
                windows[:1])
            writer.write_index()
        timings["calibrate_s"] = calib_info.pop("build_s", 0.0)
        timings["quantize_s"] = time.perf_counter() - t - timings["calibrate_s"]

        t = time.perf_counter()
        staged = LayerSource(Checkpoint.open(writer.dir), len(sk.moe.layers), None, sk.dtype)
        eval_layers = ChunkedLayers(sk, ctx.stream_chunk_experts, device, run_reason=q_layers.run_reason)
        with stages.stage("evaluate"):
            q = evaluate_streamed(sk, staged, tokenizer, windows, tasks, ev, device,
                                  sub_progress(ctx.progress, 0.75, 0.97), ctx.check_cancel, eval_layers)
        timings["evaluate_s"] = time.perf_counter() - t

        num_experts = {i: b.num_experts for i, b in sk.moe.blocks.items()}
        result = build_result(recipe, info, fp, q, state, num_experts, timings, device, calib_info)
        result["streaming"] = {"checkpoint_bytes": sk.checkpoint_bytes, "layers": len(sk.moe.layers),
                               "expert_chunks": {"fp_evaluate": fp_layers.record(), "quantize": q_layers.record(),
                                                 "evaluate": eval_layers.record()}}
        result["text_ranges"] = text_ranges(result, eval_check.get("text"))
        result.setdefault("warnings", []).extend(range_warnings(result["text_ranges"]))
        result["warnings"].extend(w for ls in (fp_layers, q_layers, eval_layers) for w in ls.warnings)
        if ctx.save_dir is not None:
            ctx.progress("save", 0.97)
            t = time.perf_counter()
            with stages.stage("save"):
                result["artifacts"] = writer.finish(tokenizer, state, recipe, result, windows[:1], probe_logits)
            result["timings"]["save_s"] = round(time.perf_counter() - t, 3)
    finally:
        writer.discard()  # no-op once published
    result.update(stages.overall())
    if device.type == "cuda":  # CUDA's max allocated was reset per stage: the run's is the largest stage's
        result["peak_memory_mb"] = result["peak_device_mb"]
    result["streaming"]["stage_peaks"] = stages.stages
    ctx.progress("done", 1.0)
    return result
