"""A floor for a run's ETA: the measured seconds of the stages it has not reached yet.

The rate extrapolation of moeq.db.repository.progress can promise too little when the bar's stage shares
do not match this machine (an evaluation that takes longer than the plan assumed: "ETA 7 s" with 28 s
left while the bar sits still). The stages still ahead of the run took, on the last finished run of the
same model and techniques, a measured number of seconds; the ETA never says less than that.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from moeq.db.models import Run, RunProgress

ORDER = ("load", "fp_evaluate", "quantize", "evaluate", "save", "done")
TIMINGS = {"load": ("load_s",), "fp_evaluate": ("fp_evaluate_s",), "quantize": ("calibrate_s", "quantize_s"),
           "evaluate": ("evaluate_s",), "save": ("save_s",)}


def phase_of(stages: list[str]) -> str | None:
    """The pipeline stage a run is in, from its stage history (oldest first); None when unknown (MoQE)."""
    phase = None
    for stage in stages:
        text = stage.split(" · ")[-1].strip()  # without "attempt N · "
        if text.startswith("load"):
            phase = "load"
        elif text.startswith("FP reference"):
            phase = "fp_evaluate"
        elif text.startswith(("calibrate", "quantize")):
            phase = "quantize"
        elif text.startswith("evaluate"):
            phase = "evaluate"
        elif text.startswith("save"):
            phase = "save"
        elif text.startswith("done"):
            phase = "done"
    return phase


def last_timings(s: Session, model_ref: str, techniques: str, exclude_id: str | None = None) -> dict | None:
    """Stage timings of the last succeeded run of the same model and techniques."""
    q = select(Run).where(Run.model_ref == model_ref, Run.techniques == techniques, Run.status == "succeeded")
    if exclude_id is not None:
        q = q.where(Run.id != exclude_id)
    prev = s.scalar(q.order_by(Run.finished_at.desc()).limit(1))
    timings = ((prev.result or {}).get("timings") if prev is not None else None) or {}
    return timings if isinstance(timings, dict) and timings else None


def seconds_ahead(measured: dict | None, phase: str | None, save_model: bool) -> float | None:
    """What the stages after `phase` took in `measured` (None when unknown or nothing is ahead)."""
    if not measured or phase not in ORDER:
        return None
    ahead = ORDER[ORDER.index(phase) + 1:]
    if not save_model:
        ahead = tuple(p for p in ahead if p != "save")
    total = sum(float(measured.get(k) or 0.0) for p in ahead for k in TIMINGS.get(p, ()))
    return total if total > 0 else None


def eta_floor(s: Session, run: Run) -> float | None:
    """Seconds the stages after the current one took last time (None when unknown)."""
    if isinstance((run.recipe or {}).get("moqe"), dict):
        return None
    stages = list(s.scalars(select(RunProgress.stage).where(RunProgress.run_id == run.id)
                            .order_by(RunProgress.id)))
    phase = phase_of(stages or [run.stage or ""])
    measured = last_timings(s, run.model_ref, run.techniques, exclude_id=run.id) if phase else None
    return seconds_ahead(measured, phase, bool(run.save_model))


class StageFloor:
    """The same floor for a view that sees only `(stage, fraction)` (the CLI's bar and stage lines):
    the timings are read once, the phase follows the stages the view has been shown."""

    def __init__(self, measured: dict | None, save_model: bool) -> None:
        self.measured, self.save_model, self.phase = measured, save_model, None

    def __call__(self, stage: str) -> float | None:
        self.phase = phase_of([stage]) or self.phase
        return seconds_ahead(self.measured, self.phase, self.save_model)


def stage_floor(s: Session, model_ref: str, techniques: str, save_model: bool, moqe: bool) -> StageFloor:
    """The CLI's floor for a run of this model and techniques (none for MoQE: its stages differ)."""
    return StageFloor(None if moqe else last_timings(s, model_ref, techniques), save_model)
