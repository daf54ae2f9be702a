"""Glue between frozen Settings and the numeric core for in-process work (CLI, worker)."""

from __future__ import annotations

from pathlib import Path

from jobs.settings import Settings, ensure_home
from quant_core.context import ProgressFn, RunContext


def make_context(settings: Settings, progress: ProgressFn | None = None, should_stop=None,
                 save_dir: Path | None = None) -> RunContext:
    """RunContext for the pipeline from settings (paths, device, kernels, model roots, callbacks)."""
    ensure_home(settings)
    kwargs = {}
    if progress is not None:
        kwargs["progress"] = progress
    if should_stop is not None:
        kwargs["should_stop"] = should_stop
    return RunContext(zoo_dir=settings.zoo_dir, cache_dir=settings.cache_dir, model_roots=settings.model_roots,
                      allow_remote_code=settings.allow_remote_code, device=settings.device,
                      kernels=settings.kernels, save_dir=save_dir, **kwargs)


def build_zoo_model(settings: Settings, name: str, retrain: bool = False) -> Path:
    from quant_core.zoo.build import ensure_built

    ensure_home(settings)
    return ensure_built(name, settings.zoo_dir, retrain=retrain)
