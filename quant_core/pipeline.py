"""One run end to end: load → FP reference evaluation → calibrate and quantize → evaluate → save.

Progress fractions: load 0–0.02, FP evaluation 0.02–0.2, quantization 0.2–0.75, evaluation
0.75–0.97, save 0.97–1. The cancel flag is checked between decoder blocks.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from quant_core.adapters.model import MoEModel
from quant_core.algorithms.allocation import expert_bits
from quant_core.calibration.data import token_windows
from quant_core.context import ProgressFn, RunContext
from quant_core.errors import CalibrationError
from quant_core.evaluate.run import cached_fp_evaluation, evaluate_model
from quant_core.evaluate.task_sources import resolve_tasks
from quant_core.memory import peaks, reset_peaks
from quant_core.model_io import check_loadable, load_model, pick_device, resolve_model
from quant_core.quantize import ModelQuantizer
from quant_core.quantized import QuantState
from quant_core.recipe import Recipe
from quant_core.result import build_result
from quant_core.validate import validate_for_model

log = logging.getLogger(__name__)

TASK_SEED = 0  # every run scores the same task items, so runs are comparable
EVAL_SEED_OFFSET = 1000
TOKENS_PER_CALIB_BATCH = 8192


def _sub(progress: ProgressFn, lo: float, hi: float) -> ProgressFn:
    return lambda stage, f: progress(stage, lo + (hi - lo) * min(1.0, max(0.0, f)))


def calibration_windows(recipe: Recipe, moe: MoEModel, tokenizer, ctx: RunContext,
                        model_dir: Path | None = None) -> tuple[torch.Tensor, dict]:
    cal = recipe.calibration
    t0 = time.perf_counter()
    if cal.sampler == "ebss":
        from quant_core.calibration.ebss import ebss_windows

        windows, info = ebss_windows(moe, tokenizer, cal, recipe.seed, ctx, model_dir)
    else:
        windows = token_windows(cal.source, "calib", tokenizer, cal.samples, cal.seq_len, recipe.seed)
        info = {}
    if windows.shape[0] == 0:
        raise CalibrationError("calibration set is empty")
    info.update({"source": cal.source, "sampler": cal.sampler, "num_sequences": int(windows.shape[0]),
                 "seq_len": int(windows.shape[1]), "num_tokens": int(windows.numel()),
                 "build_s": round(time.perf_counter() - t0, 3)})
    return windows, info


def quantize_model(moe: MoEModel, tokenizer, recipe: Recipe, ctx: RunContext, device: torch.device,
                   model_dir: Path) -> tuple[QuantState, dict]:
    """Calibrate (when the recipe needs it) and quantize `moe` in place; returns state + calibration info."""
    state = QuantState()
    calib, reserve = None, None
    calib_info: dict = {"num_sequences": 0, "num_tokens": 0, "build_s": 0.0}
    if recipe.needs_calibration:
        calib, calib_info = calibration_windows(recipe, moe, tokenizer, ctx, model_dir)
        bal = recipe.calibration.balance
        if bal is not None and bal.extra_samples:
            source = recipe.calibration.source if recipe.calibration.sampler != "ebss" else "auto"
            reserve = token_windows(source, "calib", tokenizer, bal.extra_samples, calib.shape[1], recipe.seed + 1)
    bits = expert_bits(moe, recipe, model_dir, state)
    quantizer = ModelQuantizer(moe, recipe, ctx, state, device, bits)
    batch = max(1, TOKENS_PER_CALIB_BATCH // recipe.calibration.seq_len)
    quantizer.run(calib, batch, reserve)
    return state, calib_info


def run_pipeline(recipe: Recipe, ctx: RunContext) -> dict:
    timings: dict[str, float] = {}
    t = time.perf_counter()
    ctx.progress("load model", 0.0)
    path = resolve_model(recipe.model, ctx)
    info = check_loadable(path, ctx)
    model, tokenizer = load_model(path, ctx)
    moe = MoEModel(model)
    validate_for_model(recipe, moe)
    device = pick_device(ctx.device)
    reset_peaks(device)
    torch.manual_seed(recipe.seed)
    ev = recipe.eval
    windows = token_windows(ev.source, "heldout", tokenizer, ev.ppl_windows, ev.seq_len,
                            recipe.seed + EVAL_SEED_OFFSET)
    tasks = resolve_tasks(ev.tasks, ev.limit, TASK_SEED)
    timings["load_s"] = time.perf_counter() - t

    t = time.perf_counter()
    model.to(device)
    fp = cached_fp_evaluation(ctx.cache_dir, path, ev, recipe.seed, device, lambda: evaluate_model(
        moe, tokenizer, windows, tasks, ev, device, _sub(ctx.progress, 0.02, 0.2)))
    timings["fp_evaluate_s"] = time.perf_counter() - t
    ctx.check_cancel()

    t = time.perf_counter()
    state, calib_info = quantize_model(moe, tokenizer, recipe, ctx.with_progress(_sub(ctx.progress, 0.2, 0.75)),
                                       device, path)
    timings["calibrate_s"] = calib_info.pop("build_s", 0.0)
    timings["quantize_s"] = time.perf_counter() - t - timings["calibrate_s"]

    t = time.perf_counter()
    model.to(device)
    q = evaluate_model(moe, tokenizer, windows, tasks, ev, device, _sub(ctx.progress, 0.75, 0.97))
    timings["evaluate_s"] = time.perf_counter() - t

    num_experts = {i: b.num_experts for i, b in moe.blocks.items()}
    result = build_result(recipe, info, fp, q, state, num_experts, timings, device, calib_info)
    if ctx.save_dir is not None:
        from quant_core.io.save import save_quantized

        ctx.progress("save", 0.97)
        t = time.perf_counter()
        result["artifacts"] = save_quantized(ctx.save_dir, model, tokenizer, state, recipe, result, windows[:1])
        result["timings"]["save_s"] = round(time.perf_counter() - t, 3)
    result.update(peaks(device))
    ctx.progress("done", 1.0)
    return result
