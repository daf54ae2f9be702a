"""The steps every in-memory run shares — a single recipe (moeq.quant_core.pipeline) and a MoQE mixture of
recipes (moeq.quant_core.moqe.run) alike: load the FP model with what it is evaluated on, the (cached) FP
reference evaluation, and the checks every result carries (text the model can read, kernels that ran).
Seeds and windows come from moeq.quant_core.streams."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from moeq.contract.describe import ModelInfo
from moeq.quant_core.adapters.model import MoEModel
from moeq.quant_core.context import ProgressFn, RunContext
from moeq.quant_core.evaluate.run import EvalResult, cached_fp_evaluation, evaluate_model, fp_cache_path
from moeq.quant_core.evaluate.text_check import text_warnings
from moeq.quant_core.memory import reset_peaks
from moeq.quant_core.model_io import check_loadable, load_model, pick_device, resolve_model
from moeq.quant_core.modules import kernel_report
from moeq.contract.recipe import EvalSpec, Recipe
from moeq.quant_core.streams import evaluation_tasks, evaluation_windows
from moeq.quant_core.text_ranges import range_warnings, text_ranges
from moeq.quant_core.validate import validate_for_model

log = logging.getLogger(__name__)


@dataclass
class LoadedRun:
    """A run's FP model on CPU and the held-out windows and tasks it is evaluated on."""

    path: Path
    info: ModelInfo
    model: Any
    tokenizer: Any
    moe: MoEModel
    device: torch.device
    eval_spec: EvalSpec
    seed: int
    windows: torch.Tensor
    eval_check: dict
    tasks: list
    load_s: float
    vocab_size: int

    def take_model(self):
        """Hand the FP model over to be quantized in place (a MoQE variant); the run keeps no reference."""
        model, self.model, self.moe = self.model, None, None
        return model


def load_run(recipe: Recipe, ctx: RunContext, ev: EvalSpec | None = None,
             validate: list[Recipe] | None = None) -> LoadedRun:
    """Resolve and load the model, check `validate` (default: the recipe) against it before any work,
    and draw the evaluation windows and tasks of `ev` (default: the recipe's)."""
    ev = ev or recipe.eval
    path = resolve_model(recipe.model, ctx)
    t = time.perf_counter()  # building a zoo model on first use is not part of a run's cost
    info = check_loadable(path, ctx)
    model, tokenizer = load_model(path, ctx)
    moe = MoEModel(model)
    for r in validate if validate is not None else [recipe]:
        validate_for_model(r, moe)
    device = pick_device(ctx.device)
    reset_peaks(device)
    torch.manual_seed(recipe.seed)
    windows, check = evaluation_windows(ev, tokenizer, path)
    tasks = evaluation_tasks(ev)
    return LoadedRun(path, info, model, tokenizer, moe, device, ev, recipe.seed, windows, check, tasks,
                     time.perf_counter() - t, int(model.config.vocab_size))


def fp_is_cached(run: LoadedRun, ctx: RunContext) -> bool:
    return fp_cache_path(ctx.cache_dir, run.path, run.eval_spec, run.seed, run.device, run.windows,
                         run.tasks).is_file()


def fp_reference(run: LoadedRun, ctx: RunContext, progress: ProgressFn) -> EvalResult:
    """The FP model's evaluation on the run's windows and tasks, computed once per model, spec, seed and
    exact windows and tasks (moeq.quant_core.evaluate.run.fp_cache_path)."""
    run.model.to(run.device)
    return cached_fp_evaluation(ctx.cache_dir, run.path, run.eval_spec, run.seed, run.device, lambda: evaluate_model(
        run.moe, run.tokenizer, run.windows, run.tasks, run.eval_spec, run.device,
        lambda stage, f: progress(f"FP reference {stage}", f)), run.windows, run.tasks)


def add_checks(result: dict, run: LoadedRun, fp: EvalResult, calibration_check: dict | None, model,
               kernels: str) -> None:
    """The text checks and warnings every result carries, and which expert kernels `model` ran."""
    vocab = run.vocab_size
    result["text_check"] = {"calibration": calibration_check, "evaluation": run.eval_check,
                            "uniform_perplexity": vocab}
    fp_ppl = fp.probe.perplexity if run.eval_spec.perplexity else None
    result["text_ranges"] = text_ranges(result, run.eval_check.get("text"))
    result["warnings"] = (text_warnings(calibration_check, run.eval_check, fp_ppl, vocab)
                          + range_warnings(result["text_ranges"]))
    for w in result["warnings"]:
        log.warning("%s", w)
    result["environment"]["kernels"] = kernel_report(model, kernels)  # which backend the experts ran
