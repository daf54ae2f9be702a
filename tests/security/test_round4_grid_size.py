"""Round 4, hole 1: a study grid's size is the product of its axis lengths, checked before a single
point is built — the red team's 12,288,000-point grid (which took the server from 335 MB to 2.6 GB)
is refused in one line with almost no memory, and one huge axis is refused before it is split."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from moeq.app.sweep_grid import grid_recipes, parse_axes
from moeq.contract.errors import MoeqError
from moeq.contract.grid import MAX_POINTS


def _values(lo: int, hi: int) -> str:
    return ",".join(str(i) for i in range(lo, hi + 1))


ATTACK = [f"samples={_values(1, 40)}", f"seq-len={_values(8, 47)}", f"eval-limit={_values(1, 40)}",
          "router=fp,quantize,align"]


def _refused_cheaply(texts: list[str], seeds: str | None) -> str:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(MoeqError) as err:
            grid_recipes({"model": "m"}, parse_axes(texts, seeds))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1.0
    assert peak < 2 * 2**20, f"{peak} bytes traced while refusing"
    return str(err.value)


def test_the_attackers_grid_is_refused_before_it_is_built():
    line = _refused_cheaply(ATTACK, _values(0, 63))
    assert line.startswith("the grid has 12288000 runs (") and line.endswith(f"at most {MAX_POINTS}"), line
    assert "\n" not in line


def test_one_axis_with_a_million_values_is_refused_before_it_is_split():
    text = "samples=" + "1," * 1_000_000
    line = _refused_cheaply([text], None)
    assert line == f"--grid samples: more than {MAX_POINTS} values; a study may queue at most {MAX_POINTS} runs"


def test_a_grid_at_the_limit_is_still_planned():
    points, recipes = grid_recipes({"model": "m"}, parse_axes([f"samples={_values(1, 8)}"], _values(0, 63)))
    assert len(points) == len(recipes) == MAX_POINTS
