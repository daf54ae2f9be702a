"""Run lifecycle: queued → running → succeeded | failed | cancelled, with progress and heartbeats.

Claiming is atomic (UPDATE … WHERE status='queued'), so a redelivered task never runs twice;
a run whose heartbeat is older than its lease is marked failed (or requeued) by `reap_stale`.
Every write a worker makes afterwards names its attempt: once a run has been requeued and claimed
again, the first worker (merely slow, not dead) can no longer touch it — its writes are fenced off.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from moeq.db.models import Run, RunProgress, utcnow
from moeq.db.repository.owners import CLI, QUEUE, end_interrupted, owner_token, this_host
from moeq.db.repository.users import DEFAULT_PROJECT, LOCAL_USER, ensure_project, ensure_user
from moeq.contract.errors import MoeqError

TERMINAL = ("succeeded", "failed", "cancelled")


class RunNotFound(MoeqError):
    """No run with that id."""


class Superseded(MoeqError):
    """This worker's attempt no longer owns the run (it was requeued, reclaimed or finished)."""


def owns(run, attempt: int | None) -> bool:
    """True when `attempt` (None: unfenced caller) may still write to the running `run` (a Run, or
    any row with its `status` and `attempts`)."""
    return run.status == "running" and (attempt is None or run.attempts == attempt)


def aware(dt: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; they are stored as UTC."""
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt


def new_run_id() -> str:
    return uuid.uuid4().hex


def create_run(s: Session, recipe: dict, *, summary: str, techniques: str, user: str = LOCAL_USER,
               project: str = DEFAULT_PROJECT, code_version: str = "", run_id: str | None = None,
               origin: str = QUEUE) -> Run:
    """A queued run. origin CLI: this process executes it (recorded as its owner from the start, so
    it is ended, never handed to a worker, if the process dies before it finishes)."""
    u = ensure_user(s, user)
    p = ensure_project(s, project)
    run = Run(id=run_id or new_run_id(), user_id=u.id, project_id=p.id, model_ref=recipe.get("model", ""),
              recipe=recipe, recipe_summary=summary[:256], techniques=techniques[:256], status="queued",
              code_version=code_version, origin=origin)
    if origin == CLI:
        run.worker_host, (run.owner_pid, run.owner_start) = this_host(), owner_token()
    s.add(run)
    s.flush()
    return run


def get_run(s: Session, run_id: str) -> Run:
    run = s.get(Run, run_id)
    if run is None:
        raise RunNotFound(f"no run with id {run_id!r}")
    return run


def resolve_run_id(s: Session, ref: str, projects: tuple[str, ...] | None = None) -> str:
    """The full id of the run that `ref` names: a whole id or a unique prefix of at least 4
    characters, among the runs of `projects` (None: all). Anything else is RunNotFound."""
    from moeq.db.models import Project

    ref = ref.strip().lower()
    q = select(Run.id)
    if projects is not None:
        q = q.join(Project, Run.project_id == Project.id).where(Project.name.in_(projects))
    exact = s.scalar(q.where(Run.id == ref))
    if exact:
        return exact
    ids = list(s.scalars(q.where(Run.id.like(f"{ref}%")).limit(2))) if len(ref) >= 4 and ref.isalnum() else []
    if len(ids) != 1:
        why = "is ambiguous" if ids else "matches no run"
        raise RunNotFound(f"run id {ref!r} {why}" + (" (give at least 4 characters)" if len(ref) < 4 else ""))
    return ids[0]


def set_task_id(s: Session, run_id: str, task_id: str) -> None:
    s.execute(update(Run).where(Run.id == run_id).values(celery_task_id=task_id, enqueued_at=utcnow()))


def orphaned_queued(s: Session, older_than_s: float) -> list[str]:
    """Queued runs whose message was sent (or created) longer ago than `older_than_s` — possibly lost
    with a broker restart; re-sending is safe because claiming is atomic."""
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    rows = s.scalars(select(Run).where(Run.status == "queued", Run.cancel_requested.is_(False),
                                       or_(Run.origin.is_(None), Run.origin != CLI)))  # never a `moeq run`'s
    return [r.id for r in rows if (aware(r.enqueued_at) or aware(r.created_at)) < cutoff]


def claim_run(s: Session, run_id: str, worker_host: str, device: str) -> bool:
    """Atomically move a queued run to running; False when another worker got it or it ended."""
    now = utcnow()
    pid, start = owner_token()
    res = s.execute(update(Run).where(Run.id == run_id, Run.status == "queued", Run.cancel_requested.is_(False))
                    .values(status="running", worker_host=worker_host, device=device, started_at=now,
                            heartbeat_at=now, attempts=Run.attempts + 1, stage="starting", owner_pid=pid,
                            owner_start=start))
    return res.rowcount == 1


def update_progress(s: Session, run_id: str, fraction: float, stage: str, attempt: int | None = None) -> None:
    """Record progress (never decreasing) and a heartbeat; also append to the progress history."""
    run = get_run(s, run_id)
    if not owns(run, attempt):
        return
    fraction = max(run.progress or 0.0, min(1.0, float(fraction)))
    run.progress, run.stage, run.heartbeat_at = fraction, stage[:256], utcnow()
    s.add(RunProgress(run_id=run_id, fraction=fraction, stage=stage[:256]))


def heartbeat(s: Session, run_id: str, attempt: int | None = None) -> None:
    cond = [Run.id == run_id, Run.status == "running"] + ([Run.attempts == attempt] if attempt is not None else [])
    s.execute(update(Run).where(*cond).values(heartbeat_at=utcnow()))


def mark_failed(s: Session, run_id: str, error_type: str, message: str, tb: str | None = None,
                status: str = "failed", attempt: int | None = None) -> None:
    run = get_run(s, run_id)
    if run.status in ("succeeded",) or (attempt is not None and not owns(run, attempt)):
        return
    run.status, run.error_type, run.error_message, run.error_traceback = status, error_type, message[:10_000], tb
    run.finished_at = utcnow()


def request_cancel(s: Session, run_id: str) -> str:
    """Flag a run for cancellation; a queued run is cancelled at once. Returns the new status."""
    run = get_run(s, run_id)
    if run.status in TERMINAL:
        return run.status
    run.cancel_requested = True
    if run.status == "queued":
        run.status, run.finished_at, run.error_type, run.error_message = "cancelled", utcnow(), "Cancelled", \
            "cancelled before it started"
    return run.status


def cancel_requested(s: Session, run_id: str, attempt: int | None = None) -> bool:
    """The user asked to cancel, or (with `attempt`) this attempt lost the run: either way, stop."""
    row = s.execute(select(Run.cancel_requested, Run.status, Run.attempts).where(Run.id == run_id)).one()
    return bool(row.cancel_requested) or (attempt is not None and not owns(row, attempt))


def reap_stale(s: Session, lease_seconds: float, requeue: bool = False) -> list[str]:
    """Runs marked running whose heartbeat is older than the lease: worker lost. Fail or requeue them."""
    cutoff = utcnow() - timedelta(seconds=lease_seconds)
    stale = [r for r in s.scalars(select(Run).where(Run.status == "running"))
             if (aware(r.heartbeat_at) or aware(r.started_at) or cutoff) < cutoff]
    for run in stale:
        seen = aware(run.heartbeat_at).isoformat() if run.heartbeat_at else "never"
        cli = run.origin == CLI or (run.origin is None and not run.celery_task_id)  # also one from before 0004
        if cli:  # its `moeq run` process is gone; no worker may take over what it was not given
            end_interrupted(run, "failed", "failed: interrupted",
                            f"its moeq run process (pid {run.owner_pid} on {run.worker_host}) stopped sending "
                            f"heartbeats (last {seen}); the run was interrupted and no results were stored")
        elif requeue and not run.cancel_requested:
            # progress is kept: the next attempt continues the bar from here (it never goes back)
            run.status, run.stage = "queued", f"requeued: worker {run.worker_host} lost"
        else:
            run.status, run.finished_at, run.stage = "failed", utcnow(), "failed: worker lost"
            run.error_type = "WorkerLost"
            run.error_message = (f"worker {run.worker_host} stopped sending heartbeats (last {seen}); "
                                 "the run was interrupted and no results were stored")
    return [r.id for r in stale]


def set_notes(s: Session, run_id: str, notes: str | None = None, tags: list[str] | None = None) -> None:
    run = get_run(s, run_id)
    if notes is not None:
        run.notes = notes
    if tags is not None:
        run.tags = ",".join(sorted({t.strip() for t in tags if t.strip()}))[:512]


def progress_history(s: Session, run_id: str) -> list[tuple[float, str]]:
    rows = s.execute(select(RunProgress.fraction, RunProgress.stage).where(RunProgress.run_id == run_id)
                     .order_by(RunProgress.id))
    return [(f, st) for f, st in rows]
