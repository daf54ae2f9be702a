"""The seed policy: which token windows each part of a run reads, and with which seed — the one place
that says it, for single runs, MoQE runs and streamed runs alike.

Every random draw of a run derives from the recipe's `seed`, except what the run is evaluated on
(evaluation windows and task items are the same for every seed, so repeats of a recipe over seeds are
scored on the same items and windows and can be paired, moeq.contract.stats):

- calibration windows: split "calib", `seed` (the EBSS sampler draws its own, moeq.quant_core.calibration.ebss)
- balance reserve (extra calibration windows for under-routed experts): split "calib", `seed + 1`
- evaluation windows (perplexity, KL, routing): split "heldout", EVAL_SEED, whatever the recipe's seed
- MoQE router training windows: the calibration stream after every variant's calibration tokens
  (disjoint from them and, being split "calib", from the evaluation windows); a "random" source draws
  a fresh stream with `seed + 2000`
- MoQE router: initial weights and training order from `seed` (moeq.quant_core.moqe)
- task items: TASK_SEED, whatever the recipe's seed, so every run scores the same items

`auto` text resolves to the model's own text files when it ships them (evaluate.text_check).
"""

from __future__ import annotations

from pathlib import Path

import torch

from moeq.quant_core.calibration.data import token_windows
from moeq.contract.errors import CalibrationError
from moeq.quant_core.evaluate.task_sources import resolve_tasks
from moeq.quant_core.evaluate.text_check import model_text_source, token_check
from moeq.contract.recipe import EvalSpec, Recipe

TASK_SEED = 0
RESERVE_SEED_OFFSET = 1
EVAL_SEED = 1000  # the draw seed-0 runs always had, so their windows are unchanged
ROUTER_SEED_OFFSET = 2000


def calibration_windows(recipe: Recipe, tokenizer, model_dir: Path | None) -> tuple[torch.Tensor, str]:
    """(windows, resolved source) of the recipe's calibration text (not EBSS)."""
    cal = recipe.calibration
    source = model_text_source(cal.source, model_dir, "calib")
    return token_windows(source, "calib", tokenizer, cal.samples, cal.seq_len, recipe.seed), source


def reserve_windows(recipe: Recipe, tokenizer, n: int, seq_len: int) -> torch.Tensor:
    """Extra calibration windows the balance step may add (a stream apart from the calibration's)."""
    cal = recipe.calibration
    source = cal.source if cal.sampler != "ebss" else "auto"
    return token_windows(source, "calib", tokenizer, n, seq_len, recipe.seed + RESERVE_SEED_OFFSET)


def evaluation_windows(ev: EvalSpec, tokenizer, model_dir: Path | None) -> tuple[torch.Tensor, dict]:
    """(held-out windows, their text check) for perplexity, KL and routing — the same for every seed."""
    source = model_text_source(ev.source, model_dir, "heldout")
    windows = token_windows(source, "heldout", tokenizer, ev.ppl_windows, ev.seq_len, EVAL_SEED)
    return windows, token_check(tokenizer, windows, source)


def evaluation_tasks(ev: EvalSpec) -> list:
    return resolve_tasks(ev.tasks, ev.limit, TASK_SEED)


def router_windows(recipe: Recipe, variants: list, tokenizer, model_dir: Path | None = None
                   ) -> tuple[torch.Tensor, dict]:
    """Training windows for the MoQE router, disjoint from every variant's calibration windows and from
    the evaluation windows: the run's calibration stream (split "calib", run seed) after the tokens any
    variant calibrated on; a "random" source draws fresh random windows."""
    spec, cal = recipe.moqe, recipe.calibration
    seq = recipe.eval.seq_len
    if cal.source == "random":
        seed = recipe.seed + ROUTER_SEED_OFFSET
        return (token_windows("random", "calib", tokenizer, spec.train_samples, seq, seed),
                {"source": "random", "seed": seed, "skipped_windows": 0})
    source = model_text_source(cal.source, model_dir, "calib")
    bos = 1 if tokenizer.bos_token_id is not None else 0
    used = max([v.calibration.samples * (v.calibration.seq_len - bos) for v in variants
                if not isinstance(v, str) and v.calibration.sampler != "ebss" and v.calibration.source == cal.source
                and v.seed == recipe.seed] or [0])
    skip = -(-used // (seq - bos))
    windows = token_windows(source, "calib", tokenizer, skip + spec.train_samples, seq, recipe.seed)[skip:]
    if windows.shape[0] == 0:
        raise CalibrationError(f"calibration source {cal.source!r} has no text left for the MoQE router after the "
                               f"{used} tokens the variants calibrate on; give a longer source")
    return windows, {"source": source, "split": "calib", "seed": recipe.seed, "skipped_windows": skip,
                     "skipped_tokens": used, "windows": int(windows.shape[0]),
                     "saved_variants_unchecked": sum(isinstance(v, str) for v in variants)}
