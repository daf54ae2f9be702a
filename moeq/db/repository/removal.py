"""Archive (hide from lists, keep everything) or delete (the row, its progress history) a finished run."""

from __future__ import annotations

from sqlalchemy import delete as sql_delete
from sqlalchemy.orm import Session

from moeq.contract.errors import MoeqError
from moeq.db.models import Run, RunProgress
from moeq.db.repository.runs import TERMINAL, get_run


class RunBusy(MoeqError):
    """The run has not ended: cancel it first."""


def _ended(run: Run, verb: str) -> None:
    if run.status not in TERMINAL:
        raise RunBusy(f"run {run.id[:8]} is {run.status}; cancel it first (`moeq runs cancel {run.id[:8]}`), "
                      f"then {verb} it")


def set_archived(s: Session, run_id: str, archived: bool = True) -> bool:
    """Archive (or bring back) an ended run; returns the previous state."""
    run = get_run(s, run_id)
    if archived:
        _ended(run, "archive")
    before = bool(run.archived)
    run.archived = archived
    return before


def delete_run(s: Session, run_id: str) -> None:
    """Delete an ended run and its progress history (its saved model is the caller's: moeq.jobs.removal)."""
    run = get_run(s, run_id)
    _ended(run, "delete")
    s.execute(sql_delete(RunProgress).where(RunProgress.run_id == run_id))
    s.delete(run)
