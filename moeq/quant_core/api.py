"""The pipeline's one entry point: everything outside the numeric core (`moeq/jobs/`) calls it here.

`run(recipe, ctx)` quantizes and evaluates one recipe and returns the result dict: keys model,
recipe, metrics, bits, calibration, timings, environment, expert_stats, diagnostics (the caller,
jobs, adds run_id and status). User-fixable problems raise `moeq.contract.errors.MoeqError` subclasses; a
cancel request raises `CancelledError` between decoder blocks. `build_zoo_model`, `check_save_target`
and `export_saved` are the other torch work the command line asks for.

Importing this module is cheap and torch-free (tests/test_imports.py checks it): every heavy import
happens inside the function that needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moeq.quant_core.context import ProgressFn, RunContext
from moeq.contract.recipe import Recipe, parse_recipe

__all__ = ["ProgressFn", "RunContext", "build_zoo_model", "check_save_target", "export_saved", "run"]

EXPORT_FORMATS = ("compressed-tensors", "hf")


def run(recipe: Recipe | dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Quantize `recipe.model` with `recipe`, evaluate against FP, return the result dict. A parsed
    Recipe is used as it is (the caller parsed it once); a dict is parsed here."""
    from moeq.quant_core.pipeline import run_pipeline
    from moeq.contract.seeding import with_run_seed
    from moeq.contract.sources import confine_recipe

    if not isinstance(recipe, Recipe):
        recipe = parse_recipe(recipe)
    recipe = confine_recipe(recipe, data_roots=ctx.data_roots, task_roots=ctx.task_roots,
                            saved_roots=ctx.saved_roots)
    if recipe.moqe is not None:
        from moeq.quant_core.moqe.run import run_moqe

        return run_moqe(recipe, ctx)
    from moeq.quant_core.streaming.select import use_streaming

    drawn = with_run_seed(recipe)  # every component seed follows the run's seed (moeq.contract.seeding)
    if use_streaming(recipe, ctx):
        from moeq.quant_core.streaming.pipeline import run_streamed

        result = run_streamed(drawn, ctx)
    else:
        result = run_pipeline(drawn, ctx)
    result["recipe"] = recipe.to_dict()  # the recipe as given; its seed says how the draws were offset
    return result


def build_zoo_model(name: str, zoo_dir: Path, retrain: bool = False) -> Path:
    """The directory of zoo model `name`, built (trained or generated) under `zoo_dir` if needed."""
    from moeq.quant_core.zoo.build import ensure_built

    return ensure_built(name, zoo_dir, retrain=retrain)


def check_save_target(path: Path) -> None:
    """ArtifactError unless `path` is new or an empty directory (existing data is never touched)."""
    from moeq.quant_core.io.atomic import check_target

    check_target(path)


def export_saved(saved_dir: Path, out_dir: Path, fmt: str = "compressed-tensors") -> None:
    """Write the model saved by `run` (with ctx.save_dir) under `saved_dir` to the new folder `out_dir`
    for serving: compressed-tensors pack-quantized, or ("hf") the plain dequantized checkpoint."""
    import shutil

    from moeq.quant_core.io.atomic import check_target, write_dir_atomically
    from moeq.quant_core.io.load import verify_checksums

    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (one of {', '.join(EXPORT_FORMATS)})")
    check_target(out_dir)  # before any work: an existing non-empty folder is never touched
    verify_checksums(saved_dir)

    def fill(tmp: Path) -> None:
        if fmt == "hf":
            for f in Path(saved_dir).iterdir():
                if f.is_file() and not f.name.startswith(("moeq", "checksums")):
                    shutil.copy2(f, tmp / f.name)
        else:
            from moeq.quant_core.io.export_ct import export_compressed_tensors

            export_compressed_tensors(saved_dir, tmp)

    write_dir_atomically(out_dir, fill)
