"""What a pipeline run needs from its caller, passed explicitly (never read from globals)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from moeq.contract.errors import CancelledError

ProgressFn = Callable[[str, float], None]  # (stage text, fraction 0..1 of the whole run)


def sub_progress(progress: ProgressFn, lo: float, hi: float) -> ProgressFn:
    """`progress` for a part of the run that spans [lo, hi] of the whole bar (its own fraction clamped to 0..1)."""
    return lambda stage, f: progress(stage, lo + (hi - lo) * min(1.0, max(0.0, f)))


def _no_progress(stage: str, fraction: float) -> None:
    return None


def _never() -> bool:
    return False


@dataclass(frozen=True)
class RunContext:
    zoo_dir: Path
    cache_dir: Path
    model_roots: tuple[Path, ...] = ()
    allow_remote_code: bool = False
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    kernels: str = "auto"  # "auto" | "torch" | "triton"
    progress: ProgressFn = field(default=_no_progress)
    should_stop: Callable[[], bool] = field(default=_never)
    save_dir: Path | None = None
    # where recipe-named files may come from (moeq.contract.sources); None = unrestricted
    data_roots: tuple[Path, ...] | None = None
    task_roots: tuple[Path, ...] | None = None
    saved_roots: tuple[Path, ...] | None = None
    stream: str = "auto"  # "auto" | "on" | "off": stream layers from disk (see moeq.quant_core.streaming)
    stream_chunk_experts: int | str = "auto"  # routed experts a streamed layer loads at a time ("auto": from memory)

    def with_progress(self, progress: ProgressFn) -> "RunContext":
        return replace(self, progress=progress)

    def check_cancel(self) -> None:
        """Raise CancelledError when the caller asked to stop (called between blocks)."""
        if self.should_stop():
            raise CancelledError("run cancelled")
