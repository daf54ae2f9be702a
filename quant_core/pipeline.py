"""One run end to end: load → FP reference evaluation → calibrate and quantize → evaluate → save.

Progress: each stage's share of the bar comes from its measured cost (quant_core.stage_plan; the FP
evaluation gets none when it is cached). The cancel flag is checked between decoder blocks.
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
from spec.errors import CalibrationError
from quant_core.evaluate.run import cached_fp_evaluation, evaluate_model, fp_cache_path
from quant_core.evaluate.text_check import model_text_source, text_warnings, token_check
from quant_core.evaluate.task_sources import resolve_tasks
from quant_core.memory import peaks, reset_peaks
from quant_core.model_io import check_loadable, load_model, pick_device, resolve_model
from quant_core.quantize import ModelQuantizer
from quant_core.quantized import QuantState
from spec.recipe import Recipe
from quant_core.modules import kernel_report
from quant_core.result import build_result
from quant_core.stage_plan import load_costs, plan, record_costs
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
        source = model_text_source(cal.source, model_dir, "calib")
        windows = token_windows(source, "calib", tokenizer, cal.samples, cal.seq_len, recipe.seed)
        info = {"text_check": token_check(tokenizer, windows, source)}
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


def _method(recipe: Recipe) -> str:
    from spec.recipe import technique_to_dict

    return "+".join(technique_to_dict(t)["name"] for t in recipe.techniques) or "none"


def run_pipeline(recipe: Recipe, ctx: RunContext) -> dict:
    timings: dict[str, float] = {}
    t = time.perf_counter()
    ctx.progress("load model", 0.0)
    path = resolve_model(recipe.model, ctx)
    t = time.perf_counter()  # building a zoo model on first use is not part of a run's cost
    info = check_loadable(path, ctx)
    model, tokenizer = load_model(path, ctx)
    moe = MoEModel(model)
    validate_for_model(recipe, moe)
    device = pick_device(ctx.device)
    reset_peaks(device)
    torch.manual_seed(recipe.seed)
    ev = recipe.eval
    ev_source = model_text_source(ev.source, path, "heldout")
    windows = token_windows(ev_source, "heldout", tokenizer, ev.ppl_windows, ev.seq_len,
                            recipe.seed + EVAL_SEED_OFFSET)
    eval_check = token_check(tokenizer, windows, ev_source)
    tasks = resolve_tasks(ev.tasks, ev.limit, TASK_SEED)
    timings["load_s"] = time.perf_counter() - t
    fp_cached = fp_cache_path(ctx.cache_dir, path, ev, recipe.seed, device).is_file()
    skip = ({"fp_evaluate"} if fp_cached else set()) | (set() if ctx.save_dir is not None else {"save"})
    stages = plan(load_costs(ctx.cache_dir, recipe.model, _method(recipe)), skip)

    def sub(stage: str) -> ProgressFn:
        return _sub(ctx.progress, *stages.span(stage))

    t = time.perf_counter()
    model.to(device)
    fp = cached_fp_evaluation(ctx.cache_dir, path, ev, recipe.seed, device, lambda: evaluate_model(
        moe, tokenizer, windows, tasks, ev, device, _prefixed(sub("fp_evaluate"), "FP reference")))
    timings["fp_evaluate_s"] = time.perf_counter() - t
    ctx.check_cancel()

    t = time.perf_counter()
    state, calib_info = quantize_model(moe, tokenizer, recipe, ctx.with_progress(sub("quantize")), device, path)
    timings["calibrate_s"] = calib_info.pop("build_s", 0.0)
    timings["quantize_s"] = time.perf_counter() - t - timings["calibrate_s"]

    t = time.perf_counter()
    model.to(device)
    q = evaluate_model(moe, tokenizer, windows, tasks, ev, device, sub("evaluate"))
    timings["evaluate_s"] = time.perf_counter() - t

    num_experts = {i: b.num_experts for i, b in moe.blocks.items()}
    calib_check = calib_info.pop("text_check", None)
    result = build_result(recipe, info, fp, q, state, num_experts, timings, device, calib_info)
    vocab = int(model.config.vocab_size)
    result["text_check"] = {"calibration": calib_check, "evaluation": eval_check, "uniform_perplexity": vocab}
    fp_ppl = fp.probe.perplexity if ev.perplexity else None
    result["warnings"] = text_warnings(calib_check, eval_check, fp_ppl, vocab)
    for w in result["warnings"]:
        log.warning("%s", w)
    result["environment"]["kernels"] = kernel_report(model, ctx.kernels)  # which backend the experts ran
    if ctx.save_dir is not None:
        from quant_core.io.save import save_quantized

        ctx.progress("save", stages.span("save")[0])
        t = time.perf_counter()
        result["artifacts"] = save_quantized(ctx.save_dir, model, tokenizer, state, recipe, result, windows[:1])
        result["timings"]["save_s"] = round(time.perf_counter() - t, 3)
    record_costs(ctx.cache_dir, recipe.model, _method(recipe), {
        "load": timings["load_s"], "quantize": timings["quantize_s"] + timings["calibrate_s"],
        "evaluate": timings["evaluate_s"], "save": result["timings"].get("save_s", 0.0),
        **({} if fp_cached else {"fp_evaluate": timings["fp_evaluate_s"]})})
    result.update(peaks(device))
    ctx.progress("done", 1.0)
    return result


def _prefixed(progress: ProgressFn, prefix: str) -> ProgressFn:
    return lambda stage, f: progress(f"{prefix} {stage}", f)
