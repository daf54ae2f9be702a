"""Detect runs whose worker died (no heartbeat within the lease) and requeue or fail them; a `moeq run`
whose process is gone is ended as interrupted, never requeued (moeq.db.repository.owners)."""

from __future__ import annotations

import logging
import threading

from sqlalchemy import select

from moeq.db.models import Run, utcnow
from moeq.db.repository.owners import end_dead_cli_runs
from moeq.db.repository.runs import orphaned_queued, reap_stale
from moeq.db.store import Store
from moeq.jobs.settings import Settings

log = logging.getLogger(__name__)


def reap(settings: Settings, store: Store, celery_app=None) -> list[str]:
    """One sweep: stale runs with attempts left are requeued (and re-sent), the others fail; queued
    runs whose message may have been lost (broker restart) are re-sent."""
    from moeq.jobs.submit import enqueue

    with store.session() as s:
        end_dead_cli_runs(s)  # a `moeq run` on this host that was killed: ended, never requeued
    with store.session() as s:
        orphans = orphaned_queued(s, settings.requeue_s)
    for rid in orphans:
        log.warning("run %s has been queued for over %.0f s; re-sending its message", rid, settings.requeue_s)
        enqueue(settings, store, rid, celery_app)
    with store.session() as s:
        stale = [r.id for r in s.scalars(select(Run).where(Run.status == "running"))]
        if not stale:
            return []
        retry = reap_stale(s, settings.lease_s, requeue=True)
        requeue = []
        for rid in retry:
            run = s.get(Run, rid)
            if run.status != "queued":  # ended, not requeued (a `moeq run` whose process is gone)
                continue
            if run.attempts >= settings.max_attempts:
                run.status, run.error_type = "failed", "WorkerLost"
                run.finished_at, run.stage = utcnow(), "failed: worker lost"
                run.error_message = (f"worker {run.worker_host} was lost {run.attempts} time(s); "
                                     "giving up (no results stored)")
            else:
                requeue.append(rid)
    for rid in requeue:
        log.warning("run %s lost its worker; requeueing", rid)
        enqueue(settings, store, rid, celery_app)
    return retry


class ReaperThread:
    """Periodic reaping inside a worker or the web server process."""

    def __init__(self, settings: Settings, store: Store, celery_app=None, interval: float | None = None) -> None:
        self.settings, self.store, self.app = settings, store, celery_app
        self.interval = interval or max(1.0, settings.lease_s / 3)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="moeq-reaper", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                reap(self.settings, self.store, self.app)
            except Exception as exc:  # never let a transient moeq/db/broker error kill the sweeper
                log.warning("reaper sweep failed: %s", exc)

    def start(self) -> "ReaperThread":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
