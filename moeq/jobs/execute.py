"""Execute one run by id: claim it, run the pipeline with db-backed progress, heartbeat and cancel
checks, then store every result in one transaction (or the failure with its type and message).

The Celery task and `moeq run` both go through `execute_run`, so a run behaves the same whether it
was queued from the web page or started from the command line.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
import traceback
from pathlib import Path

from sqlalchemy.exc import OperationalError

from moeq.db.engine import DatabaseError
from moeq.db.repository.results import result_json, store_result
from moeq.db.repository.runs import (Superseded, cancel_requested, claim_run, get_run, heartbeat, mark_failed,
                                update_progress)
from moeq.db.store import Store
from moeq.jobs.interrupt import end_own_run
from moeq.jobs.local import make_context
from moeq.jobs.settings import Settings
from moeq.quant_core.api import ProgressFn
from moeq.contract.errors import CancelledError, MoeqError
from moeq.contract.recipe import Recipe

log = logging.getLogger(__name__)
PROGRESS_MIN_INTERVAL_S = 0.5
CANCEL_CHECK_INTERVAL_S = 1.0
STORE_RETRY_S = (1, 2, 4, 8, 15, 30)  # waits before retrying the final write while the db is away


def store_with_retry(store: Store, fn, what: str) -> None:
    """Run `fn(session)` in one transaction, retrying while the database is unreachable."""
    for wait in (*STORE_RETRY_S, None):
        try:
            with store.session() as s:
                fn(s)
            return
        except OperationalError as exc:
            if wait is None:
                raise DatabaseError(f"database unreachable while storing {what}; the run stays unfinished and "
                                    f"will be failed or requeued when its lease expires ({exc.orig})") from None
            log.warning("database unreachable while storing %s; retrying in %ss", what, wait)
            time.sleep(wait)


class ProgressWriter:
    """Throttled progress → db (on stage change or every PROGRESS_MIN_INTERVAL_S), plus cancel polling."""

    def __init__(self, store: Store, run_id: str, attempt: int, echo: ProgressFn | None = None,
                 base: float = 0.0) -> None:
        self.store, self.run_id, self.attempt, self.echo = store, run_id, attempt, echo
        self.base = base  # a retry continues the bar from where the lost attempt left it
        self.last_write = 0.0
        self.last_stage = ""
        self.last_cancel_check = 0.0
        self.cancelled = False

    def __call__(self, stage: str, fraction: float) -> None:
        if self.attempt > 1:
            stage = f"attempt {self.attempt} · {stage}"
            fraction = self.base + (1.0 - self.base) * fraction
        if self.echo is not None:
            self.echo(stage, fraction)
        now = time.monotonic()
        if stage != self.last_stage or now - self.last_write >= PROGRESS_MIN_INTERVAL_S or fraction >= 1.0:
            try:
                with self.store.session() as s:
                    update_progress(s, self.run_id, fraction, stage, self.attempt)
            except OperationalError as exc:  # progress is best effort; the run goes on
                log.warning("progress not recorded (database unreachable): %s", exc.orig)
            self.last_write, self.last_stage = now, stage

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self.cancelled and now - self.last_cancel_check >= CANCEL_CHECK_INTERVAL_S:
            self.last_cancel_check = now
            try:
                with self.store.session() as s:
                    self.cancelled = cancel_requested(s, self.run_id, self.attempt)
            except OperationalError as exc:
                log.warning("cancel flag not checked (database unreachable): %s", exc.orig)
        return self.cancelled


class Heartbeat:
    """Background thread touching the run's heartbeat while the pipeline works."""

    def __init__(self, store: Store, run_id: str, attempt: int, interval: float) -> None:
        self.store, self.run_id, self.attempt, self.interval = store, run_id, attempt, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{run_id[:8]}", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with self.store.session() as s:
                    heartbeat(s, self.run_id, self.attempt)
            except Exception as exc:  # keep beating through transient db errors
                log.warning("heartbeat for %s failed: %s", self.run_id, exc)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def execute_run(settings: Settings, run_id: str, *, store: Store | None = None, worker_host: str | None = None,
                device: str | None = None, save_dir: Path | None = None, progress: ProgressFn | None = None,
                recipe: Recipe | None = None, interrupt_ends_run: bool = False) -> dict:
    """Run `run_id` if it is still queued; returns its result JSON afterwards. `recipe`: the run's
    parsed recipe when this process admitted it (`moeq run`); otherwise the stored recipe is parsed
    once, by the pipeline's entry point (a worker). `interrupt_ends_run` (`moeq run`): Ctrl-C ends the
    run as cancelled and SIGTERM (moeq.jobs.interrupt) as failed: interrupted, then the interrupt goes on."""
    from moeq.quant_core.api import run as run_pipeline

    store = store or Store(settings.database_url)
    host = worker_host or platform.node()
    with store.session() as s:
        if not claim_run(s, run_id, host, device or settings.device):
            log.info("run %s is not queued any more; skipping", run_id)
            return result_json(get_run(s, run_id))
        run = get_run(s, run_id)
        stored, save, attempt, base = dict(run.recipe), run.save_model, run.attempts, float(run.progress or 0.0)
    if recipe is None:
        recipe = stored
    writer = ProgressWriter(store, run_id, attempt, echo=progress, base=base if attempt > 1 else 0.0)
    if save and save_dir is None:
        save_dir = Path(settings.artifacts_dir) / run_id
    ctx = make_context(settings, progress=writer, should_stop=writer.should_stop, save_dir=save_dir)
    try:
        with Heartbeat(store, run_id, attempt, settings.heartbeat_s):
            result = run_pipeline(recipe, ctx)
        store_with_retry(store, lambda s: store_result(s, run_id, result, attempt), f"the result of run {run_id}")
    except KeyboardInterrupt as exc:
        if interrupt_ends_run:
            store_with_retry(store, lambda s: end_own_run(s, run_id, attempt, exc), "an interruption")
        raise
    except Superseded as exc:  # this worker was presumed lost and the run was requeued: discard quietly
        log.warning("%s", exc)
    except DatabaseError:
        raise
    except CancelledError:  # by the user, or because another attempt took the run over
        store_with_retry(store, lambda s: mark_failed(s, run_id, "Cancelled", "cancelled by the user",
                                                      status="cancelled", attempt=attempt), "a cancellation")
    except MoeqError as exc:
        store_with_retry(store, lambda s: mark_failed(s, run_id, type(exc).__name__, str(exc), attempt=attempt),
                         "a failure")
    except Exception as exc:  # an internal error: keep the traceback for the run page
        log.exception("run %s failed", run_id)
        tb = traceback.format_exc()
        store_with_retry(store, lambda s: mark_failed(s, run_id, type(exc).__name__, str(exc) or repr(exc), tb,
                                                      attempt=attempt), "a failure")
    with store.session() as s:
        return result_json(get_run(s, run_id))
