"""A study's grid points as recipe dicts — shared by `moeq sweep` and the Studies tab. Axis names:
bits (W3A16 …), techniques (alternatives by ',', a combination by '+'), group-size, router, samples,
seq-len, eval-limit, seed, or any recipe key in dotted form (allocation.method, weights.sym …)."""

from __future__ import annotations

import copy

from moeq.contract.errors import MoeqError
from moeq.contract.grid import grid_points, parse_axis, parse_seeds
from moeq.contract.presets import expand, merge
from moeq.contract.recipe import parse_bits

FLAG_AXES = ("bits", "techniques", "group-size", "router", "samples", "seq-len", "eval-limit")


def _nested(key: str, value) -> dict:
    out = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def point_recipe(base: dict, point: dict) -> dict:
    """`base` with one grid point's values laid over it (an axis replaces what the base says)."""
    r = copy.deepcopy(base)
    for name, v in point.items():
        if name == "bits":
            r = merge(r, parse_bits(str(v)))
        elif name == "techniques":
            r.pop("techniques", None)
            r = merge(r, expand(str(v).split("+")))
        elif name == "group-size":
            r = merge(r, {"weights": {"group_size": None if v in ("channel", "none", -1) else v}})
        elif name == "router":
            r["router"] = v
        elif name in ("samples", "seq-len"):
            r = merge(r, {"calibration": {name.replace("-", "_"): v}})
        elif name == "eval-limit":
            r = merge(r, {"eval": {"limit": v}})
        elif name == "seed":
            r["seed"] = int(v)
        else:
            r = merge(r, _nested(name, v))
    return r


def parse_axes(texts: list[str], seeds: str | None) -> dict[str, list]:
    """`NAME=V1,V2` texts (and `0,1,2` seeds) → ordered axes; one MoeqError line for anything wrong."""
    axes: dict[str, list] = {}
    for text in texts:
        if not text.strip():
            continue
        name, values = parse_axis(text)
        if name in axes:
            raise MoeqError(f"grid: axis {name!r} is given twice")
        if name == "seed":
            raise MoeqError("grid: give seeds as seeds (e.g. --seeds 0,1,2), not as an axis")
        axes[name] = values
    if seeds is not None and str(seeds).strip():
        axes["seed"] = parse_seeds(str(seeds))
    if not axes:
        raise MoeqError("a study needs at least one grid axis or seeds (e.g. bits=W3A16,W4A16 and seeds 0,1,2)")
    return axes


def grid_recipes(base: dict, axes: dict[str, list]) -> tuple[list[dict], list[dict]]:
    """(points, recipe dicts) of the whole grid."""
    points = grid_points(axes)
    return points, [point_recipe(base, p) for p in points]
