"""`moeq run` interrupted: Ctrl-C ends its run as cancelled, SIGTERM as failed: interrupted.

The run executes in the `moeq run` process, so when that process is told to stop, the run stops
with it and says so (instead of staying "running" forever); a SIGKILL cannot be caught and is found
later (moeq.db.repository.owners.end_dead_cli_runs).
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy.orm import Session

from moeq.db.repository.owners import end_interrupted
from moeq.db.repository.runs import get_run, owns


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so the pipeline (which catches Exception) cannot swallow it."""

    signal_name = "SIGTERM"


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises Terminated in the main thread (the previous handler comes back after)."""

    def on_term(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def end_own_run(s: Session, run_id: str, attempt: int, exc: BaseException) -> None:
    """The interrupted process ends its own run (only while this attempt still owns it)."""
    run = get_run(s, run_id)
    if not owns(run, attempt):
        return
    if isinstance(exc, Terminated):
        end_interrupted(run, "failed", "failed: interrupted (SIGTERM)",
                        "the moeq run process was terminated (SIGTERM); no results were stored")
    else:
        end_interrupted(run, "cancelled", "cancelled: interrupted (Ctrl-C)",
                        "the moeq run process was interrupted (Ctrl-C / SIGINT); no results were stored")
