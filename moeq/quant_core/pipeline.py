"""One run end to end: load → FP reference evaluation → calibrate and quantize → evaluate → save.
The load, FP reference and result checks are the steps every run shares (moeq.quant_core.run_steps; a MoQE
run uses them too); seeds and windows come from moeq.quant_core.streams.

Progress: each stage's share of the bar comes from its measured cost (moeq.quant_core.stage_plan; the FP
evaluation gets none when it is cached). The cancel flag is checked between decoder blocks.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from moeq.quant_core import streams
from moeq.quant_core.adapters.model import MoEModel
from moeq.quant_core.algorithms.allocation import expert_bits
from moeq.quant_core.context import ProgressFn, RunContext, sub_progress
from moeq.contract.errors import CalibrationError
from moeq.quant_core.evaluate.run import evaluate_model
from moeq.quant_core.evaluate.text_check import token_check
from moeq.quant_core.memory import peaks
from moeq.quant_core.quantize import ModelQuantizer
from moeq.quant_core.quantized import QuantState
from moeq.contract.recipe import Recipe
from moeq.quant_core.result import build_result
from moeq.quant_core.run_steps import add_checks, fp_is_cached, fp_reference, load_run
from moeq.quant_core.stage_plan import load_costs, plan, record_costs

log = logging.getLogger(__name__)

TOKENS_PER_CALIB_BATCH = 8192



def calibration_windows(recipe: Recipe, moe: MoEModel, tokenizer, ctx: RunContext,
                        model_dir: Path | None = None) -> tuple[torch.Tensor, dict]:
    cal = recipe.calibration
    t0 = time.perf_counter()
    if cal.sampler == "ebss":
        from moeq.quant_core.calibration.ebss import ebss_windows

        windows, info = ebss_windows(moe, tokenizer, cal, recipe.seed, ctx, model_dir)
    else:
        windows, rng = streams.calibration_draw(recipe, tokenizer, model_dir)
        info = {"text_check": token_check(tokenizer, windows, rng.source), "text": rng.record()}
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
            reserve, rng = streams.reserve_windows(recipe, tokenizer, bal.extra_samples, calib.shape[1], model_dir)
            calib_info["reserve_text"] = rng.record()
    bits = expert_bits(moe, recipe, model_dir, state)
    quantizer = ModelQuantizer(moe, recipe, ctx, state, device, bits)
    batch = max(1, TOKENS_PER_CALIB_BATCH // recipe.calibration.seq_len)
    quantizer.run(calib, batch, reserve)
    return state, calib_info


def _method(recipe: Recipe) -> str:
    from moeq.contract.recipe import technique_to_dict

    return "+".join(technique_to_dict(t)["name"] for t in recipe.techniques) or "none"


def run_pipeline(recipe: Recipe, ctx: RunContext) -> dict:
    timings: dict[str, float] = {}
    ctx.progress("load model", 0.0)
    run = load_run(recipe, ctx)
    model, tokenizer, moe, device, ev = run.model, run.tokenizer, run.moe, run.device, run.eval_spec
    timings["load_s"] = run.load_s
    fp_cached = fp_is_cached(run, ctx)
    skip = ({"fp_evaluate"} if fp_cached else set()) | (set() if ctx.save_dir is not None else {"save"})
    stages = plan(load_costs(ctx.cache_dir, recipe.model, _method(recipe)), skip)

    def sub(stage: str) -> ProgressFn:
        return sub_progress(ctx.progress, *stages.span(stage))

    t = time.perf_counter()
    fp = fp_reference(run, ctx, sub("fp_evaluate"))
    timings["fp_evaluate_s"] = time.perf_counter() - t
    ctx.check_cancel()

    t = time.perf_counter()
    state, calib_info = quantize_model(moe, tokenizer, recipe, ctx.with_progress(sub("quantize")), device, run.path)
    timings["calibrate_s"] = calib_info.pop("build_s", 0.0)
    timings["quantize_s"] = time.perf_counter() - t - timings["calibrate_s"]

    t = time.perf_counter()
    model.to(device)
    q = evaluate_model(moe, tokenizer, run.windows, run.tasks, ev, device, sub("evaluate"))
    timings["evaluate_s"] = time.perf_counter() - t

    num_experts = {i: b.num_experts for i, b in moe.blocks.items()}
    calib_check = calib_info.pop("text_check", None)
    result = build_result(recipe, run.info, fp, q, state, num_experts, timings, device, calib_info)
    add_checks(result, run, fp, calib_check, model, ctx.kernels)
    if ctx.save_dir is not None:
        from moeq.quant_core.io.save import save_quantized

        ctx.progress("save", stages.span("save")[0])
        t = time.perf_counter()
        result["artifacts"] = save_quantized(ctx.save_dir, model, tokenizer, state, recipe, result, run.windows[:1])
        result["timings"]["save_s"] = round(time.perf_counter() - t, 3)
    record_costs(ctx.cache_dir, recipe.model, _method(recipe), {
        "load": timings["load_s"], "quantize": timings["quantize_s"] + timings["calibrate_s"],
        "evaluate": timings["evaluate_s"], "save": result["timings"].get("save_s", 0.0),
        **({} if fp_cached else {"fp_evaluate": timings["fp_evaluate_s"]})})
    result.update(peaks(device))
    ctx.progress("done", 1.0)
    return result
