"""The seed and text policy: which token windows each part of a run reads, and with which seed — the one
place that says it, for single runs, MoQE runs and streamed runs alike.

Every random draw of a run derives from the recipe's `seed`, except what the run is evaluated on
(evaluation windows and task items are the same for every seed, so repeats of a recipe over seeds are
scored on the same items and windows and can be paired, moeq.contract.stats):

- evaluation windows (perplexity, KL, routing): split "heldout", EVAL_SEED whatever the recipe's seed, from
  token 0 of their source
- calibration windows: split "calib", `seed` (the EBSS sampler draws its own, moeq.quant_core.calibration.ebss)
- balance reserve (extra calibration windows for under-routed experts): the calibration stream right after
  the calibration windows
- MoQE router training windows: the calibration stream after every variant's calibration and reserve
  tokens; a "random" source draws a fresh stream with `seed + 2000`
- MoQE router: initial weights and training order from `seed` (moeq.quant_core.moqe)
- task items: TASK_SEED, whatever the recipe's seed, so every run scores the same items

Disjoint text, always: a stream that reads the same token stream as the evaluation (the same file, which
`auto` gives both when a model ships only `text.txt`) starts after the evaluation's tokens; every draw
records its source and token range (`TextRange`), and moeq.quant_core.text_ranges says when a source
was too short for all the windows asked for, or (a guard that should never fire) when two ranges overlap.

`auto` text resolves to the model's own text files when it ships them (evaluate.text_check).
"""

from __future__ import annotations

from pathlib import Path

import torch

from moeq.quant_core.calibration.data import TextRange, body_tokens, draw_windows
from moeq.contract.errors import CalibrationError
from moeq.quant_core.evaluate.task_sources import resolve_tasks
from moeq.quant_core.evaluate.text_check import model_text_source, token_check
from moeq.contract.recipe import EvalSpec, Recipe

TASK_SEED = 0
EVAL_SEED = 1000  # the draw seed-0 runs always had, so their windows are unchanged
ROUTER_SEED_OFFSET = 2000


Stream = tuple[str, str, int]  # (resolved source, split, seed): one token stream


def _same_stream(a: Stream, b: Stream) -> bool:
    """Whether two draws read one token stream: a file's tokens whatever the split and seed; the corpus's
    for one split and seed; random tokens never."""
    if a[0] != b[0] or a[0] == "random":
        return False
    return a[0].startswith("file:") or a[1:] == b[1:]


def _eval_stream(recipe: Recipe, model_dir: Path | None) -> Stream:
    return model_text_source(recipe.eval.source, model_dir, "heldout"), "heldout", EVAL_SEED


def _calib_stream(recipe: Recipe, model_dir: Path | None) -> Stream:
    return model_text_source(recipe.calibration.source, model_dir, "calib"), "calib", recipe.seed


def _reserve_stream(recipe: Recipe, model_dir: Path | None) -> Stream:
    cal = recipe.calibration
    source = cal.source if cal.sampler != "ebss" else "auto"
    return model_text_source(source, model_dir, "calib"), "calib", recipe.seed


def _after_eval(recipe: Recipe, stream: Stream, tokenizer, model_dir: Path | None) -> int:
    """First token of `stream` no evaluation window reads."""
    ev = recipe.eval
    if _same_stream(stream, _eval_stream(recipe, model_dir)):
        windows = recipe.moqe.eval_samples if recipe.moqe is not None else ev.ppl_windows  # a MoQE run's
        return windows * body_tokens(tokenizer, ev.seq_len)
    return 0


def _calibration_start(recipe: Recipe, tokenizer, model_dir: Path | None) -> int:
    return _after_eval(recipe, _calib_stream(recipe, model_dir), tokenizer, model_dir)


def _reserve_start(recipe: Recipe, tokenizer, model_dir: Path | None) -> int:
    cal, stream = recipe.calibration, _reserve_stream(recipe, model_dir)
    start = _after_eval(recipe, stream, tokenizer, model_dir)
    if cal.sampler != "ebss" and _same_stream(stream, _calib_stream(recipe, model_dir)):
        start = max(start, _calibration_start(recipe, tokenizer, model_dir)
                    + cal.samples * body_tokens(tokenizer, cal.seq_len))
    return start


def _calibration_end(recipe: Recipe, stream: Stream, tokenizer, model_dir: Path | None) -> int:
    """First token of `stream` after everything `recipe`'s evaluation, calibration and reserve read."""
    cal, end = recipe.calibration, _after_eval(recipe, stream, tokenizer, model_dir)
    if cal.sampler != "ebss" and _same_stream(stream, _calib_stream(recipe, model_dir)):
        end = max(end, _calibration_start(recipe, tokenizer, model_dir)
                  + cal.samples * body_tokens(tokenizer, cal.seq_len))
    if cal.balance is not None and cal.balance.extra_samples and _same_stream(stream, _reserve_stream(recipe, model_dir)):
        end = max(end, _reserve_start(recipe, tokenizer, model_dir)
                  + cal.balance.extra_samples * body_tokens(tokenizer, cal.seq_len))
    return end


def calibration_draw(recipe: Recipe, tokenizer, model_dir: Path | None) -> tuple[torch.Tensor, TextRange]:
    """(windows, range read) of the recipe's calibration text (not EBSS)."""
    cal = recipe.calibration
    source, split, seed = _calib_stream(recipe, model_dir)
    return draw_windows(source, split, tokenizer, cal.samples, cal.seq_len, seed,
                        _calibration_start(recipe, tokenizer, model_dir))


def calibration_windows(recipe: Recipe, tokenizer, model_dir: Path | None) -> tuple[torch.Tensor, str]:
    """(windows, resolved source) of the recipe's calibration text (not EBSS)."""
    windows, rng = calibration_draw(recipe, tokenizer, model_dir)
    return windows, rng.source


def reserve_windows(recipe: Recipe, tokenizer, n: int, seq_len: int,
                    model_dir: Path | None = None) -> tuple[torch.Tensor, TextRange]:
    """Extra calibration windows the balance step may add: the calibration stream after its windows."""
    source, split, seed = _reserve_stream(recipe, model_dir)
    return draw_windows(source, split, tokenizer, n, seq_len, seed, _reserve_start(recipe, tokenizer, model_dir))


def evaluation_windows(ev: EvalSpec, tokenizer, model_dir: Path | None) -> tuple[torch.Tensor, dict]:
    """(held-out windows, their text check and range) for perplexity, KL and routing: the first windows of
    the evaluation source, whatever else reads it — the same for every seed."""
    source = model_text_source(ev.source, model_dir, "heldout")
    windows, rng = draw_windows(source, "heldout", tokenizer, ev.ppl_windows, ev.seq_len, EVAL_SEED)
    return windows, {**token_check(tokenizer, windows, source), "text": rng.record()}


def evaluation_tasks(ev: EvalSpec) -> list:
    return resolve_tasks(ev.tasks, ev.limit, TASK_SEED)


def router_windows(recipe: Recipe, variants: list, tokenizer, model_dir: Path | None = None
                   ) -> tuple[torch.Tensor, dict]:
    """Training windows for the MoQE router, disjoint from every variant's calibration and reserve windows
    and from the evaluation windows: the run's calibration stream (split "calib", run seed) after the
    tokens any of them read; a "random" source draws fresh random windows."""
    spec, cal = recipe.moqe, recipe.calibration
    seq = recipe.eval.seq_len
    if cal.source == "random":
        seed = recipe.seed + ROUTER_SEED_OFFSET
        windows, rng = draw_windows("random", "calib", tokenizer, spec.train_samples, seq, seed)
        return windows, {"source": "random", "seed": seed, "skipped_windows": 0, "text": rng.record()}
    stream = _calib_stream(recipe, model_dir)
    body = body_tokens(tokenizer, seq)
    used = max([_calibration_end(v, stream, tokenizer, model_dir) for v in variants if not isinstance(v, str)]
               + [_after_eval(recipe, stream, tokenizer, model_dir)])
    skip = -(-used // body)
    try:
        windows, rng = draw_windows(*stream[:2], tokenizer, spec.train_samples, seq, stream[2], skip * body)
    except CalibrationError:
        raise CalibrationError(f"calibration source {cal.source!r} has no text left for the MoQE router after the "
                               f"{used} tokens evaluation and calibration read; give a longer source") from None
    return windows, {"source": stream[0], "split": "calib", "seed": recipe.seed, "skipped_windows": skip,
                     "skipped_tokens": used, "windows": int(windows.shape[0]), "text": rng.record(),
                     "saved_variants_unchecked": sum(isinstance(v, str) for v in variants)}
