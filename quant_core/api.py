"""Public entry of the numeric core: run one recipe end to end and return the result dict.

Contract: the returned dict has keys model, recipe, metrics, bits, calibration,
timings, environment, expert_stats, diagnostics. The caller (jobs) adds run_id and status.
User-fixable problems raise `spec.errors.MoeqError` subclasses; a cancel request raises
`CancelledError` between decoder blocks.
"""

from __future__ import annotations

from typing import Any

from quant_core.context import RunContext
from spec.recipe import Recipe, parse_recipe


def run(recipe: Recipe | dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Quantize `recipe.model` with `recipe`, evaluate against FP, return the result dict."""
    from quant_core.pipeline import run_pipeline
    from spec.sources import confine_recipe

    if not isinstance(recipe, Recipe):
        recipe = parse_recipe(recipe)
    recipe = confine_recipe(recipe, data_roots=ctx.data_roots, task_roots=ctx.task_roots,
                            saved_roots=ctx.saved_roots)
    if recipe.moqe is not None:
        from quant_core.moqe.run import run_moqe

        return run_moqe(recipe, ctx)
    from quant_core.streaming.select import use_streaming

    if use_streaming(recipe, ctx):
        from quant_core.streaming.pipeline import run_streamed

        return run_streamed(recipe, ctx)
    return run_pipeline(recipe, ctx)
