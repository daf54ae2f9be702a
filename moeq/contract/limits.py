"""Bounds every recipe must respect before it is stored or queued (torch-free).

`check_raw` runs on the input before parsing (JSON text or a dict alike): size, nesting depth, string
length, NUL bytes, integers of absurd size and non-finite numbers (so no error message ever has to
print a 5000-digit number). `check_bounds` runs on the parsed Recipe: numeric ranges the dataclasses
leave open (seed, kl_tokens, MoQE sizes) and hardware-independent caps on the work one run may ask
for: tokens per window set (EBSS beams and MoQE router epochs included), MoQE variants, task count.
The cost model that weighs all of it by the model's size is moeq.contract.cost (at admission).
Each failure is one RecipeError naming the key.
"""

from __future__ import annotations

import json
import math

from moeq.contract.errors import MoeqError, RecipeError

MAX_RECIPE_BYTES = 64 * 1024
MAX_DEPTH = 32
MAX_STRING = 4096
MAX_SEED = 2**32 - 1  # torch / numpy seeds
MAX_KL_TOKENS = 1 << 22
MAX_WORK_TOKENS = 1 << 24  # tokens of one kind of window set (calibration, evaluation, MoQE training)
MAX_MOQE_EPOCHS = 10_000
MAX_MOQE_SAMPLES = 100_000
MAX_MOQE_VARIANTS = 16  # the MoQE paper mixes 2-4; every variant is a full quantization and evaluation
MAX_ROUTER_TOKENS = 1 << 28  # MoQE router training: epochs × train_samples × eval.seq_len
MAX_TASKS = 32  # entries of eval.tasks (each is scored on the FP model and every quantized one)
MAX_EVAL_LIMIT = 100_000  # items per task (the largest common lm-eval tasks have tens of thousands)
MAX_COMPARE_RUNS = 32  # runs side by side (CLI and Compare page): tables and charts stay readable
MAX_INT = 2**63  # no recipe number is near it; bigger ones are refused before anything formats them


def check_compare_count(count: int) -> None:
    """One line when more runs are asked to be compared than the tables and charts can show."""
    if count > MAX_COMPARE_RUNS:
        raise MoeqError(f"compare at most {MAX_COMPARE_RUNS} runs at once ({count} given)")


def check_raw(data) -> None:
    """Refuse oversize, deeply nested, NUL-carrying or absurdly long input before parsing it."""
    if isinstance(data, (str, bytes)):
        if len(data) > MAX_RECIPE_BYTES:
            raise RecipeError("<root>", f"recipe is larger than {MAX_RECIPE_BYTES} bytes")
        return
    stack = [(data, 1, "")]
    size = 0
    while stack:  # iterative: a hostile nesting depth cannot exhaust the Python stack
        value, depth, key = stack.pop()
        if depth > MAX_DEPTH:
            raise RecipeError(key or "<root>", f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            items = list(value.items())
        elif isinstance(value, (list, tuple)):
            items = list(enumerate(value))
        else:
            _check_number(value, key)
            if isinstance(value, str):
                if "\x00" in value:
                    raise RecipeError(key or "<root>", "contains a NUL byte")
                if len(value) > MAX_STRING:
                    raise RecipeError(key or "<root>", f"string longer than {MAX_STRING} characters")
            size += len(value) if isinstance(value, str) else 8
            if size > MAX_RECIPE_BYTES:
                raise RecipeError("<root>", f"recipe is larger than {MAX_RECIPE_BYTES} bytes")
            continue
        for k, v in items:
            if isinstance(k, str) and ("\x00" in k or len(k) > 256):
                raise RecipeError(key or "<root>", "has a key with a NUL byte or over 256 characters")
            size += len(str(k)) + 4
            if size > MAX_RECIPE_BYTES:
                raise RecipeError("<root>", f"recipe is larger than {MAX_RECIPE_BYTES} bytes")
            sub = f"{key}[{k}]" if isinstance(k, int) else (f"{key}.{k}" if key else str(k))
            stack.append((v, depth + 1, sub))


def _check_number(value, key: str) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int) and not -MAX_INT < value < MAX_INT:
        raise RecipeError(key or "<root>", f"integer out of range (more than {len(str(MAX_INT)) - 1} digits)")
    if isinstance(value, float) and not math.isfinite(value):
        raise RecipeError(key or "<root>", "must be a finite number")


def loads(text: str | bytes):
    """json.loads that turns a hostile nesting depth or a number too long to convert into a RecipeError."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecipeError("<root>", f"not valid JSON: {exc}") from None
    except RecursionError:
        raise RecipeError("<root>", "JSON nested too deeply") from None
    except ValueError:  # Python refuses to convert integers of more than 4300 digits
        raise RecipeError("<root>", "a number has too many digits") from None


def _range(value: int | float, lo, hi, key: str) -> None:
    if not lo <= value <= hi:
        raise RecipeError(key, f"must be in [{lo}, {hi}], got {value}")


def check_bounds(recipe) -> None:
    """Ranges and the work caps on a parsed Recipe."""
    _range(recipe.seed, 0, MAX_SEED, "seed")
    ev, cal = recipe.eval, recipe.calibration
    _range(ev.kl_tokens, 0, MAX_KL_TOKENS, "eval.kl_tokens")
    if ev.limit is not None:
        _range(ev.limit, 1, MAX_EVAL_LIMIT, "eval.limit")
    if len(ev.tasks) > MAX_TASKS:
        raise RecipeError("eval.tasks", f"lists {len(ev.tasks)} tasks; the limit is {MAX_TASKS}")
    work = [("calibration", cal.samples * cal.seq_len), ("eval", ev.ppl_windows * ev.seq_len)]
    if cal.sampler == "ebss":  # every sample is generated with `width` beams
        work.append(("calibration.ebss.width", cal.ebss.width * cal.samples * cal.seq_len))
    if cal.balance is not None:
        work.append(("calibration.balance", cal.balance.extra_samples * cal.seq_len))
    if recipe.allocation is not None:
        _range(recipe.allocation.seed, 0, MAX_SEED, "allocation.seed")
    m = recipe.moqe
    if m is not None:
        _range(m.epochs, 1, MAX_MOQE_EPOCHS, "moqe.epochs")
        _range(m.train_samples, 1, MAX_MOQE_SAMPLES, "moqe.train_samples")
        _range(m.eval_samples, 1, MAX_MOQE_SAMPLES, "moqe.eval_samples")
        if not 0.0 <= m.alpha <= 100.0:
            raise RecipeError("moqe.alpha", f"must be in [0, 100], got {m.alpha}")
        if len(m.variants) > MAX_MOQE_VARIANTS:
            raise RecipeError("moqe.variants", f"lists {len(m.variants)} variants; the limit is {MAX_MOQE_VARIANTS}")
        router = m.epochs * m.train_samples * ev.seq_len
        if router > MAX_ROUTER_TOKENS:
            raise RecipeError("moqe.epochs", f"router training asks for {router:,} tokens (epochs × train_samples × "
                              f"eval.seq_len); the limit is {MAX_ROUTER_TOKENS:,}")
        work += [("moqe.train_samples", m.train_samples * ev.seq_len),
                 ("moqe.eval_samples", m.eval_samples * ev.seq_len)]
    for key, tokens in work:
        if tokens > MAX_WORK_TOKENS:
            how = "width × samples × seq_len" if key.endswith("width") else "samples × seq_len"
            raise RecipeError(key, f"asks for {tokens:,} tokens of windows ({how}); the limit is "
                              f"{MAX_WORK_TOKENS:,}")
