"""Grid axes of a study (`moeq sweep`): `--grid NAME=V1,V2,…` and `--seeds 0,1,2`, expanded to grid
points in axis order (seeds last). Torch-free; what a point means for a recipe is the CLI's business
(moeq.app.commands.sweep)."""

from __future__ import annotations

import itertools
import json
import math

from moeq.contract.errors import MoeqError
from moeq.contract.limits import MAX_SEED

MAX_POINTS = 512  # runs one study may queue
MAX_SEEDS = 64  # repeats of one recipe one launch may queue


def parse_seeds(text: str) -> list[int]:
    """`0,1,2` → [0, 1, 2]; each in [0, 2**32 − 1], no repeats."""
    try:
        seeds = [int(t) for t in (text or "").split(",") if t.strip()]
    except ValueError:
        raise MoeqError(f"--seeds: expected comma-separated integers like 0,1,2, got {_shown(text)}") from None
    if not seeds:
        raise MoeqError("--seeds: give at least one seed, e.g. --seeds 0,1,2")
    if len(seeds) > MAX_SEEDS:
        raise MoeqError(f"--seeds: {len(seeds)} seeds; one launch may repeat a recipe over at most {MAX_SEEDS}")
    if any(not 0 <= s <= MAX_SEED for s in seeds) or len(set(seeds)) != len(seeds):
        raise MoeqError(f"--seeds: seeds must be distinct integers in [0, {MAX_SEED}], got {_shown(text)}")
    return seeds


def _shown(text: str, width: int = 40) -> str:
    """The input as a message may quote it: at most `width` characters (a 5,000-digit seed is not echoed)."""
    text = text or ""
    return repr(text) if len(text) <= width else f"{text[:width]!r}… ({len(text)} characters)"


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:  # not JSON (a name such as W4A16), or a number of more than 4300 digits
        return text
    except RecursionError:
        raise MoeqError(f"--grid: a value is nested too deeply ({text[:20]}…)") from None


def parse_axis(text: str) -> tuple[str, list]:
    """`bits=W3A16,W4A16` → ("bits", ["W3A16", "W4A16"]); numbers and null are parsed as JSON."""
    name, sep, values = (text or "").partition("=")
    name = name.strip()
    if values.count(",") >= MAX_POINTS:  # counted before anything is split or parsed
        raise MoeqError(f"--grid {name}: more than {MAX_POINTS} values; a study may queue at most {MAX_POINTS} runs")
    vals = [_value(v.strip()) for v in values.split(",") if v.strip()]
    if not sep or not name or not vals:
        raise MoeqError(f"--grid: expected NAME=V1,V2 (e.g. bits=W3A16,W4A16 or techniques=gptq,rotation+gptq), "
                        f"got {text!r}")
    if len({json.dumps(v) for v in vals}) != len(vals):
        raise MoeqError(f"--grid {name}: a value is repeated in {values!r}")
    return name, vals


def grid_points(axes: dict[str, list]) -> list[dict]:
    """Every combination of the axes' values, in axis order (the last axis varies fastest)."""
    check_size(axes)
    names = list(axes)
    return [dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]


def check_size(axes: dict[str, list]) -> int:
    """The number of grid points (the product of the axis lengths), refused over MAX_POINTS before
    a single point is built."""
    size = math.prod(len(v) for v in axes.values())
    if size > MAX_POINTS:
        shape = " × ".join(f"{len(v)} {n}" for n, v in axes.items())
        raise MoeqError(f"the grid has {size} runs ({shape}); a study may queue at most {MAX_POINTS}")
    return size
