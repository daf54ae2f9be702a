"""The run's seed reaches every random draw of its recipe: besides the calibration windows
(moeq.quant_core.streams), each component seed — a technique's `seed` (rotation, DuQuant, …) and
`allocation.seed` — is offset by the recipe's `seed`, so repeats of one recipe over seeds differ in
every draw while a seed-0 run draws exactly what it always did. Evaluation items never depend on it."""

from __future__ import annotations

import dataclasses

from moeq.contract.limits import MAX_SEED


def _offset(cfg, seed: int):
    if cfg is None or not dataclasses.is_dataclass(cfg) or "seed" not in {f.name for f in dataclasses.fields(cfg)}:
        return cfg
    return dataclasses.replace(cfg, seed=(cfg.seed + seed) % (MAX_SEED + 1))


def with_run_seed(recipe):
    """The Recipe the numeric core runs: component seeds offset by `recipe.seed` (itself when 0)."""
    if not recipe.seed:
        return recipe
    return dataclasses.replace(recipe, techniques=tuple(_offset(t, recipe.seed) for t in recipe.techniques),
                               allocation=_offset(recipe.allocation, recipe.seed))
