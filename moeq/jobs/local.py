"""Glue between frozen Settings and the numeric core for in-process work (CLI, worker)."""

from __future__ import annotations

from pathlib import Path

from moeq.jobs.settings import Settings, ensure_home
from moeq.quant_core.api import ProgressFn, RunContext


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
                      kernels=settings.kernels, save_dir=save_dir, data_roots=settings.data_roots,
                      task_roots=settings.task_roots, saved_roots=saved_roots(settings), stream=settings.stream,
                      stream_chunk_experts=settings.stream_chunk_experts, **kwargs)


def saved_roots(settings: Settings) -> tuple[Path, ...] | None:
    """Where MoQE 'path:' variants may load saved models from: the model roots and the run artifacts
    (which run's artifacts a user may name is checked before queuing, moeq.jobs.admission)."""
    if not settings.team and not settings.model_roots:
        return None
    return (*settings.model_roots, settings.artifacts_dir.expanduser().resolve())


def build_zoo_model(settings: Settings, name: str, retrain: bool = False) -> Path:
    from moeq.quant_core.api import build_zoo_model as build

    ensure_home(settings)
    return build(name, settings.zoo_dir, retrain=retrain)


def check_save_target(path: Path) -> None:
    """ArtifactError unless `path` is new or an empty directory: checked before any work starts."""
    from moeq.quant_core.api import check_save_target as check

    check(path)
