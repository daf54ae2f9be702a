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


def _measured(s: Session, run: Run) -> dict | None:
    """Stage timings of the last succeeded run of the same model and techniques."""
    prev = s.scalar(select(Run).where(Run.model_ref == run.model_ref, Run.techniques == run.techniques,
                                      Run.status == "succeeded", Run.id != run.id)
                    .order_by(Run.finished_at.desc()).limit(1))
    timings = ((prev.result or {}).get("timings") if prev is not None else None) or {}
    return timings if isinstance(timings, dict) and timings else None


def eta_floor(s: Session, run: Run) -> float | None:
    """Seconds the stages after the current one took last time (None when unknown)."""
    if isinstance((run.recipe or {}).get("moqe"), dict):
        return None
    stages = list(s.scalars(select(RunProgress.stage).where(RunProgress.run_id == run.id)
                            .order_by(RunProgress.id)))
    phase = phase_of(stages or [run.stage or ""])
    measured = _measured(s, run) if phase else None
    if not measured:
        return None
    ahead = ORDER[ORDER.index(phase) + 1:]
    if not run.save_model:
        ahead = tuple(p for p in ahead if p != "save")
    total = sum(float(measured.get(k) or 0.0) for p in ahead for k in TIMINGS.get(p, ()))
    return total if total > 0 else None
