"""A MoQE run: build K quantized variants, label training windows with each one's lowest-loss
variant, train the router, and evaluate the routed mixture against every single variant and the
per-sample oracle on held-out windows and task items."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from quant_core.adapters.model import MoEModel
from quant_core.calibration.data import token_windows
from quant_core.context import RunContext
from spec.errors import CalibrationError
from quant_core.evaluate.scoring import encode
from quant_core.evaluate.task_sources import resolve_tasks
from quant_core.evaluate.tasks import TaskScore, score_tasks
from quant_core.model_io import check_loadable, load_model, pick_device, resolve_model
from quant_core.moqe.router import MoqeRouter, train_router
from spec.recipe import Recipe, moqe_variants, recipe_summary
from quant_core.memory import peaks
from quant_core.result import environment, peak_memory_mb

BATCH = 16
ROUTER_SEED_OFFSET = 2000  # "random" source: the router's windows are drawn with seed + this


@dataclass
class VariantScores:
    label: str
    train_nll: torch.Tensor  # [N_train] mean NLL per window
    eval_nll: torch.Tensor  # [N_eval]
    eval_kl: torch.Tensor | None  # [N_eval] mean token KL(FP ‖ variant)
    tasks: list[TaskScore]
    bits: float
    bits_with_overhead: float


@torch.no_grad()
def window_losses(model, windows: torch.Tensor, device, fp_logprobs: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(mean NLL per window, mean KL(FP‖model) per window or None, log-probs fp16 on CPU)."""
    nll, kl, logps = [], [], []
    for b0 in range(0, windows.shape[0], BATCH):
        ids = windows[b0:b0 + BATCH].to(device)
        logp = F.log_softmax(model(input_ids=ids, use_cache=False).logits.float()[:, :-1], -1)
        nll.append(-logp.gather(-1, ids[:, 1:, None])[..., 0].mean(-1).cpu())
        if fp_logprobs is not None:
            p = fp_logprobs[b0:b0 + BATCH].float().to(device)
            kl.append((p.exp() * (p - logp)).sum(-1).mean(-1).cpu())
        logps.append(logp.to("cpu", torch.float16))
    return torch.cat(nll), (torch.cat(kl) if kl else None), torch.cat(logps)


def _build_variant(variant: Recipe | str, path, ctx: RunContext, device, train, evalw, fp_logp, tasks
                   ) -> VariantScores:
    """Quantize (or load, for a saved-model directory) one variant and score it."""
    from quant_core.pipeline import quantize_model

    if isinstance(variant, str):
        from quant_core.io.load import load_quantized

        loaded = load_quantized(variant, device=device)
        model, tok, label = loaded.model, loaded.tokenizer, f"saved:{variant}"
        bits = loaded.meta["summary"]["bits"]
    else:
        model, tok = load_model(path, ctx)
        state, _ = quantize_model(MoEModel(model), tok, variant, ctx, device, path)
        label, bits = recipe_summary(variant), state.bits_summary()
    model.to(device)
    tr, _, _ = window_losses(model, train, device)
    ev, kl, _ = window_losses(model, evalw, device, fp_logp)
    scores = score_tasks(model, tok, tasks, device)
    return VariantScores(label, tr, ev, kl, scores, float(bits["avg_weight_bits"]),
                         float(bits["bits_per_param_with_overhead"]))


def _mixture_tasks(router: MoqeRouter, tokenizer, tasks, variants: list[VariantScores]) -> dict[str, float]:
    out = {}
    for ti, task in enumerate(tasks):
        texts = [getattr(it, "context", None) or it.prompt for it in task.items]
        picks = [int(router.choose(torch.tensor([encode(tokenizer, t, bos=True)]))[0]) for t in texts]
        out[task.name] = sum(variants[k].tasks[ti].correct[i] for i, k in enumerate(picks)) / len(texts)
    return out


def _ppl(nll: torch.Tensor) -> float:
    return float(torch.exp(nll.mean()))


def router_windows(recipe: Recipe, variants: list, tokenizer) -> tuple[torch.Tensor, dict]:
    """Training windows for the MoQE router, disjoint from every variant's calibration windows and from
    the evaluation windows (split "heldout"): the run's calibration stream (split "calib", run seed)
    after the tokens any variant calibrated on; a "random" source draws fresh random windows."""
    spec, cal = recipe.moqe, recipe.calibration
    seq = recipe.eval.seq_len
    if cal.source == "random":
        seed = recipe.seed + ROUTER_SEED_OFFSET
        return (token_windows("random", "calib", tokenizer, spec.train_samples, seq, seed),
                {"source": "random", "seed": seed, "skipped_windows": 0})
    bos = 1 if tokenizer.bos_token_id is not None else 0
    used = max([v.calibration.samples * (v.calibration.seq_len - bos) for v in variants
                if not isinstance(v, str) and v.calibration.sampler != "ebss" and v.calibration.source == cal.source
                and v.seed == recipe.seed] or [0])
    skip = -(-used // (seq - bos))
    windows = token_windows(cal.source, "calib", tokenizer, skip + spec.train_samples, seq, recipe.seed)[skip:]
    if windows.shape[0] == 0:
        raise CalibrationError(f"calibration source {cal.source!r} has no text left for the MoQE router after the "
                               f"{used} tokens the variants calibrate on; give a longer source")
    return windows, {"source": cal.source, "split": "calib", "seed": recipe.seed, "skipped_windows": skip,
                     "skipped_tokens": used, "windows": int(windows.shape[0]),
                     "saved_variants_unchecked": sum(isinstance(v, str) for v in variants)}


def run_moqe(recipe: Recipe, ctx: RunContext) -> dict:
    spec = recipe.moqe
    t0 = time.perf_counter()
    path = resolve_model(recipe.model, ctx)
    info = check_loadable(path, ctx)
    device = pick_device(ctx.device)
    fp_model, tok = load_model(path, ctx)
    fp_model.to(device)
    seq = recipe.eval.seq_len
    todo = moqe_variants(recipe)
    train, train_info = router_windows(recipe, todo, tok)
    evalw = token_windows(recipe.eval.source, "heldout", tok, spec.eval_samples, seq, recipe.seed + 1000)
    tasks = resolve_tasks(recipe.eval.tasks, recipe.eval.limit, 0)
    fp_eval_nll, _, fp_logp = window_losses(fp_model, evalw, device)
    fp_tasks = score_tasks(fp_model, tok, tasks, device)
    embedding = fp_model.get_input_embeddings().weight.detach().cpu()
    del fp_model
    variants = []
    for k, v in enumerate(todo):
        ctx.check_cancel()
        ctx.progress(f"moqe: variant {k + 1}/{len(todo)}", 0.05 + 0.7 * k / len(todo))
        variants.append(_build_variant(v, path, ctx, device, train, evalw, fp_logp, tasks))
    labels = torch.stack([v.train_nll for v in variants], 1).argmin(1)
    router = MoqeRouter(embedding, len(variants), layers=spec.encoder_layers, pad_id=tok.pad_token_id)
    ctx.progress("moqe: train router", 0.8)
    history = train_router(router, train, labels, epochs=spec.epochs, alpha=spec.alpha, seed=recipe.seed)
    picks = router.choose(evalw)
    eval_nll = torch.stack([v.eval_nll for v in variants], 1)
    mix_nll = eval_nll.gather(1, picks[:, None])[:, 0]
    kl = None
    if all(v.eval_kl is not None for v in variants):
        kl = float(torch.stack([v.eval_kl for v in variants], 1).gather(1, picks[:, None]).mean())
    mix_acc = _mixture_tasks(router, tok, tasks, variants)
    overhead = _router_overhead(router, evalw, path, ctx, device)
    single = [{"label": v.label, "perplexity": _ppl(v.eval_nll), "bits": v.bits,
               "accuracy": {t.name: t.acc for t in v.tasks},
               "avg_accuracy": sum(t.acc for t in v.tasks) / len(v.tasks) if v.tasks else None,
               "kl": None if v.eval_kl is None else float(v.eval_kl.mean())} for v in variants]
    best = min(range(len(single)), key=lambda i: single[i]["perplexity"])
    usage = torch.bincount(picks, minlength=len(variants)).float() / len(picks)
    avg = lambda d: sum(d.values()) / len(d) if d else None  # noqa: E731
    return {
        "model": recipe.model, "model_info": info.to_dict(), "recipe": recipe.to_dict(),
        "metrics": {"perplexity": _ppl(mix_nll), "fp_perplexity": _ppl(fp_eval_nll), "kl": kl,
                    "accuracy": mix_acc, "fp_accuracy": {t.name: t.acc for t in fp_tasks},
                    "avg_accuracy": avg(mix_acc), "fp_avg_accuracy": avg({t.name: t.acc for t in fp_tasks})},
        "moqe": {"variants": single, "best_single": best,
                 "oracle": {"perplexity": _ppl(eval_nll.min(1).values)},
                 "usage": usage.tolist(),
                 "stored_weight_bits": sum(v.bits for v in variants),  # all K variants stay in memory
                 "train_label_distribution": (torch.bincount(labels, minlength=len(variants)).float()
                                              / len(labels)).tolist(),
                 "train_loss": history, "router_overhead": overhead, "router_train_windows": train_info},
        "bits": {"avg_weight_bits": sum(v.bits for v in variants) / len(variants),
                 "bits_per_param_with_overhead": sum(v.bits_with_overhead for v in variants) / len(variants),
                 "experts": {}},
        "calibration": {"tokens_per_expert": {}, "fallbacks": [], "num_sequences": int(train.shape[0])},
        "timings": {"total_s": round(time.perf_counter() - t0, 3)},
        "environment": environment(device), "peak_memory_mb": round(peak_memory_mb(device)[0], 1), **peaks(device),
        "diagnostics": {},
    }


@torch.no_grad()
def _router_overhead(router: MoqeRouter, windows: torch.Tensor, path, ctx: RunContext, device) -> dict:
    """Router time relative to one forward of the FP model on the same batch (paper: < 8 %)."""
    model, _ = load_model(path, ctx)
    model.to(device)
    batch = windows[:BATCH].to(device)
    router.to(device)

    def timed(fn) -> float:
        fn()
        t = time.perf_counter()
        for _ in range(3):
            fn()
        return (time.perf_counter() - t) / 3

    model_s = timed(lambda: model(input_ids=batch, use_cache=False))
    router_s = timed(lambda: router(batch))
    router.to("cpu")
    return {"router_s": router_s, "model_s": model_s, "ratio": router_s / model_s}
