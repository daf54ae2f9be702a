"""A run's progress as people read it: fraction, stage, attempt, elapsed time and an ETA.

The ETA is the average rate of the current attempt extrapolated, never less than the measured cost of
the stages still ahead (moeq.db.repository.eta): an attempt that took over after a
requeue starts from the fraction the run had reached (progress never goes back), and its rate is
measured from its own first progress report.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from moeq.contract.eta import eta_seconds
from moeq.db.models import Run, RunProgress, utcnow
from moeq.db.repository.eta import eta_floor
from moeq.db.repository.runs import aware, get_run

def _attempt_base(s: Session, run: Run) -> float:
    """The fraction at which the current attempt began (0 for the first)."""
    if (run.attempts or 0) <= 1 or run.started_at is None:
        return 0.0
    first = s.scalar(select(RunProgress.fraction).where(RunProgress.run_id == run.id,
                                                        RunProgress.at >= run.started_at)
                     .order_by(RunProgress.id).limit(1))
    return float(first if first is not None else (run.progress or 0.0))


def progress_info(s: Session, run_id: str, now: datetime | None = None) -> dict:
    """{status, fraction, stage, attempt, elapsed_s, eta_s}; elapsed/ETA None when they do not apply."""
    run = get_run(s, run_id)
    now = now or utcnow()
    started, finished = aware(run.started_at), aware(run.finished_at)
    elapsed = eta = None
    if started is not None:
        elapsed = max(0.0, ((finished or now) - started).total_seconds())
    fraction = float(run.progress or 0.0)
    if run.status == "running" and elapsed is not None:
        # never less than what the stages ahead took last time
        eta = eta_seconds(elapsed, fraction, _attempt_base(s, run), eta_floor(s, run))
    return {"run_id": run.id, "status": run.status, "fraction": fraction, "stage": run.stage or "",
            "attempt": int(run.attempts or 0), "elapsed_s": elapsed, "eta_s": eta,
            "cancel_requested": bool(run.cancel_requested)}
