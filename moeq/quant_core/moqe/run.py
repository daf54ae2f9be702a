"""A MoQE run: build K quantized variants, label training windows with each one's lowest-loss
variant, train the router, and evaluate the routed mixture against every single variant and the
per-sample oracle on held-out windows and task items.

It is a client of the single-run pipeline: the same load step, FP reference (cached like any run's),
quantization (`moeq.quant_core.pipeline.quantize_model`), evaluation (`evaluate_model`), seed policy
(moeq.quant_core.streams) and result builder (`assemble_result`); the mixture is evaluated as an
evaluation gathered from the variants' (moeq.quant_core.moqe.mixture). Evaluation windows: the recipe's
eval spec with `moqe.eval_samples` windows. The router trains on windows disjoint from every variant's
calibration windows and from the evaluation windows; `moqe.router_train_windows` says which stream."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch

from moeq.quant_core.adapters.model import MoEModel
from moeq.quant_core.context import RunContext, sub_progress
from moeq.quant_core.evaluate.probe import probe
from moeq.quant_core.evaluate.run import EvalResult, evaluate_model
from moeq.quant_core.evaluate.scoring import encode
from moeq.quant_core.memory import peaks
from moeq.quant_core.model_io import load_model
from moeq.quant_core.moqe.mixture import mixed_evaluation, oracle_perplexity
from moeq.quant_core.moqe.router import MoqeRouter, train_router
from moeq.quant_core.pipeline import quantize_model
from moeq.contract.recipe import Recipe, moqe_variants, recipe_summary
from moeq.contract.seeding import with_run_seed
from moeq.quant_core.result import assemble_result, bits_report, result_metrics
from moeq.quant_core.run_steps import LoadedRun, add_checks, fp_is_cached, fp_reference, load_run
from moeq.quant_core.stage_plan import MOQE_DEFAULT_COSTS, load_costs, plan, record_costs
from moeq.quant_core.streams import router_windows

BATCH = 16  # windows in the batch the router overhead is timed on


@dataclass
class Variant:
    label: str
    evaluation: EvalResult
    train_nll: torch.Tensor  # [N_train] summed NLL per router-training window
    bits: dict
    calibration: dict
    timings: dict


def _build_variant(variant: Recipe | str, run: LoadedRun, ctx: RunContext, train: torch.Tensor, fp_model,
                   lo: float, hi: float) -> tuple[Variant, object]:
    """Quantize (or load, for a saved-model directory) one variant and evaluate it like a single run.
    A recipe variant quantizes `fp_model` in place when given (the run's FP model), else a fresh copy."""
    device, timings = run.device, {}
    t = time.perf_counter()
    calib: dict = {}
    if isinstance(variant, str):
        from moeq.quant_core.io.load import load_quantized

        loaded = load_quantized(variant, device=device)
        model, tok, label = loaded.model, loaded.tokenizer, f"saved:{variant}"
        bits = {k: v for k, v in loaded.meta["summary"]["bits"].items() if isinstance(v, (int, float))}
    else:
        model, tok = (fp_model, run.tokenizer) if fp_model is not None else load_model(run.path, ctx)
        quantize_progress = sub_progress(ctx.progress, lo, (lo + hi) / 2)
        state, calib = quantize_model(MoEModel(model), tok, with_run_seed(variant),  # moeq.contract.seeding
                                      ctx.with_progress(quantize_progress), device, run.path)
        timings["calibrate_s"] = calib.pop("build_s", 0.0)
        label, bits = recipe_summary(variant), bits_report(state)
        calib["experts_fell_back"] = len(state.fallbacks)
    timings["quantize_s"] = time.perf_counter() - t - timings.get("calibrate_s", 0.0)
    t = time.perf_counter()
    model.to(device)
    moe = MoEModel(model)
    evaluation = evaluate_model(moe, tok, run.windows, run.tasks, run.eval_spec, device,
                                sub_progress(ctx.progress, (lo + hi) / 2, hi))
    train_nll = probe(moe, train, kl_tokens=0, routing=False, device=device).window_nll
    timings["evaluate_s"] = time.perf_counter() - t
    return Variant(label, evaluation, train_nll, bits, calib, timings), model


def _variant_entry(v: Variant, m: dict) -> dict:
    """One variant's figures in the result (its metrics against the same FP reference as the mixture's)."""
    calibration = dict(v.calibration)
    check = calibration.pop("text_check", None)
    return {"label": v.label, "perplexity": v.evaluation.probe.perplexity, "bits": float(v.bits["avg_weight_bits"]),
            "accuracy": m["accuracy"], "avg_accuracy": m["avg_accuracy"], "kl": m["kl"],
            "mean_topk_agreement": (m.get("routing") or {}).get("mean_topk_agreement"),
            "calibration": calibration, "text_check": check, "timings": {k: round(x, 3) for k, x in v.timings.items()}}


def _task_picks(router: MoqeRouter, tokenizer, tasks) -> list[list[int]]:
    """The router's variant for each item of each scored task (by the item's context or prompt)."""
    return [[int(router.choose(torch.tensor([encode(tokenizer, getattr(it, "context", None) or it.prompt,
                                                    bos=True)]))[0]) for it in task.items]
            for task in tasks if task.items]


def _mean_bits(variants: list[Variant]) -> dict:
    """Bit averages over the variants (the mixture runs one variant per input)."""
    keys = [k for k in variants[0].bits if "bits" in k and all(isinstance(v.bits.get(k), (int, float))
                                                               for v in variants)]
    return {k: sum(v.bits[k] for v in variants) / len(variants) for k in keys}


def run_moqe(recipe: Recipe, ctx: RunContext) -> dict:
    spec = recipe.moqe
    todo = moqe_variants(recipe)
    ctx.progress("load model", 0.0)
    run = load_run(recipe, ctx, replace(recipe.eval, ppl_windows=spec.eval_samples),
                   validate=[v for v in todo if not isinstance(v, str)])
    train, train_info = router_windows(recipe, todo, run.tokenizer, run.path)
    timings = {"load_s": run.load_s}
    fp_cached = fp_is_cached(run, ctx)
    # each stage's share of the bar from this model's last measured MoQE costs (moeq.quant_core.stage_plan)
    stages = plan(load_costs(ctx.cache_dir, recipe.model, "moqe", MOQE_DEFAULT_COSTS),
                  {"fp_evaluate"} if fp_cached else set(), MOQE_DEFAULT_COSTS)
    t = time.perf_counter()
    fp = fp_reference(run, ctx, sub_progress(ctx.progress, *stages.span("fp_evaluate")))
    timings["fp_evaluate_s"] = time.perf_counter() - t
    embedding = run.model.get_input_embeddings().weight.detach().cpu().clone()
    model_s = _forward_seconds(run.model, run.windows[:BATCH].to(run.device))  # before any variant changes it
    num_experts = {i: b.num_experts for i, b in run.moe.blocks.items()}
    fp_model = run.take_model()  # the first recipe variant is quantized from it; no second FP copy is loaded
    variants, model = [], None
    start, end = stages.span("variants")
    for k, v in enumerate(todo):
        ctx.check_cancel()
        lo, hi = start + (end - start) * k / len(todo), start + (end - start) * (k + 1) / len(todo)
        ctx.progress(f"moqe: variant {k + 1}/{len(todo)}", lo)
        model = None  # the previous variant's model is freed before the next one loads
        take = fp_model is not None and not isinstance(v, str)
        built, model = _build_variant(v, run, ctx, train, fp_model if take else None, lo, hi)
        fp_model = None if take else fp_model
        variants.append(built)
    for key in ("calibrate_s", "quantize_s", "evaluate_s"):
        timings[key] = sum(v.timings.get(key, 0.0) for v in variants)

    ctx.progress("moqe: train router", stages.span("router")[0])
    t = time.perf_counter()
    labels = torch.stack([v.train_nll for v in variants], 1).argmin(1)
    torch.manual_seed(recipe.seed)  # the router's initial weights depend on the run's seed, not on what ran before
    router = MoqeRouter(embedding, len(variants), layers=spec.encoder_layers, pad_id=run.tokenizer.pad_token_id)
    history = train_router(router, train, labels, epochs=spec.epochs, alpha=spec.alpha, seed=recipe.seed)
    picks = router.choose(run.windows)
    evals = [v.evaluation for v in variants]
    mix = mixed_evaluation(evals, picks, run.windows.shape[1], _task_picks(router, run.tokenizer, run.tasks))
    overhead = _router_overhead(router, run.windows[:BATCH], model_s, run.device)
    timings["router_s"] = time.perf_counter() - t

    singles = [_variant_entry(v, result_metrics(recipe, fp, v.evaluation, num_experts)) for v in variants]
    n = len(variants)
    result = assemble_result(recipe, run.info, fp, mix, num_experts, bits=_mean_bits(variants), expert_stats=[],
                             calibration={"num_sequences": int(train.shape[0])}, timings=timings, device=run.device,
                             diagnostics={})
    result["moqe"] = {
        "variants": singles, "best_single": min(range(n), key=lambda i: singles[i]["perplexity"]),
        "oracle": {"perplexity": oracle_perplexity([e.probe for e in evals])},
        "usage": (torch.bincount(picks, minlength=n).float() / len(picks)).tolist(),
        "stored_weight_bits": sum(v.bits["avg_weight_bits"] for v in variants),  # all K variants stay in memory
        "train_label_distribution": (torch.bincount(labels, minlength=n).float() / len(labels)).tolist(),
        "train_loss": history, "router_overhead": overhead, "router_train_windows": train_info,
    }
    calib_check = next((v["text_check"] for v in singles if v["text_check"]), None)  # the first recipe variant's
    add_checks(result, run, fp, calib_check, model, ctx.kernels)
    result.update(peaks(run.device))
    record_costs(ctx.cache_dir, recipe.model, "moqe", {
        "load": timings["load_s"], "router": timings["router_s"],
        "variants": sum(timings[k] for k in ("calibrate_s", "quantize_s", "evaluate_s")),
        **({} if fp_cached else {"fp_evaluate": timings["fp_evaluate_s"]})}, MOQE_DEFAULT_COSTS)
    ctx.progress("done", 1.0)
    return result


def _timed(fn) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(3):
        fn()
    return (time.perf_counter() - t) / 3


@torch.no_grad()
def _forward_seconds(model, batch: torch.Tensor) -> float:
    return _timed(lambda: model(input_ids=batch, use_cache=False))


@torch.no_grad()
def _router_overhead(router: MoqeRouter, windows: torch.Tensor, model_s: float, device) -> dict:
    """Router time relative to one forward of the FP model on the same batch (paper: < 8 %); the FP
    forward was timed on the run's FP model before the first variant was quantized."""
    batch = windows.to(device)
    router.to(device)
    router_s = _timed(lambda: router(batch))
    router.to("cpu")
    return {"router_s": router_s, "model_s": model_s, "ratio": router_s / model_s}
