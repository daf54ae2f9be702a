"""Studies: a grid of recipes (× seeds) launched as one (`moeq sweep`). A study belongs to a project
like its runs; its progress and state derive from its runs (n of N finished); its grid table groups
the runs of one grid point (seeds aside) as mean ± sample sd (n)."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from moeq.contract.errors import MoeqError
from moeq.contract.stats import spread
from moeq.db.models import Project, Run, Study, utcnow
from moeq.db.repository.runs import TERMINAL, aware
from moeq.db.repository.users import DEFAULT_PROJECT, LOCAL_USER, ensure_project, ensure_user

METRICS = ("avg_weight_bits", "avg_accuracy", "perplexity", "kl")
SEED = "seed"


class StudyNotFound(MoeqError):
    """No study with that id (in the caller's projects)."""


def create_study(s: Session, *, name: str, model: str, base_recipe: dict, axes: dict, estimate_s: float | None,
                 user: str = LOCAL_USER, project: str = DEFAULT_PROJECT) -> Study:
    study = Study(id=uuid.uuid4().hex, name=name[:128], model_ref=model, base_recipe=base_recipe, axes=axes,
                  estimate_s=estimate_s, user_id=ensure_user(s, user).id, project_id=ensure_project(s, project).id)
    s.add(study)
    s.flush()
    return study


def point_text(point: dict) -> str:
    return json.dumps(point, sort_keys=True, default=str)


def link_run(s: Session, run_id: str, study_id: str, point: dict) -> None:
    run = s.get(Run, run_id)
    run.study_id, run.study_point = study_id, point_text(point)[:512]


def _scoped(q, projects: tuple[str, ...] | None):
    if projects is None:
        return q
    return q.where(Study.project_id.in_(select(Project.id).where(Project.name.in_(projects))))


def resolve_study_id(s: Session, ref: str, projects: tuple[str, ...] | None = None) -> str:
    """The study `ref` names: a whole id or a unique prefix of at least 4 characters."""
    ref = (ref or "").strip().lower()
    q = _scoped(select(Study.id), projects)
    ids = list(s.scalars(q.where(Study.id.like(f"{ref}%")).limit(2))) if len(ref) >= 4 and ref.isalnum() else []
    if len(ids) != 1:
        raise StudyNotFound(f"no study with id {ref!r}" if not ids else f"study id {ref!r} is ambiguous; give more of it")
    return ids[0]


def get_study(s: Session, study_id: str) -> Study:
    study = s.get(Study, study_id)
    if study is None:
        raise StudyNotFound(f"no study with id {study_id!r}")
    return study


def study_runs(s: Session, study_id: str) -> list[Run]:
    return list(s.scalars(select(Run).where(Run.study_id == study_id).order_by(Run.created_at, Run.id)))


def state(study: Study, runs: list[Run]) -> str:
    done = sum(r.status in TERMINAL for r in runs)
    if runs and done == len(runs):
        return "cancelled" if study.cancel_requested else "finished"
    if study.cancel_requested:
        return "cancelling"
    return "running" if any(r.status != "queued" for r in runs) else "queued"


def counts(runs: list[Run]) -> dict[str, int]:
    out = {k: 0 for k in ("queued", "running", "succeeded", "failed", "cancelled")}
    for r in runs:
        out[r.status] = out.get(r.status, 0) + 1
    return out


def study_to_dict(study: Study, runs: list[Run], with_grid: bool = True) -> dict:
    c = counts(runs)
    done = sum(c[k] for k in TERMINAL)
    d = {"study_id": study.id, "name": study.name, "model": study.model_ref, "axes": study.axes or {},
         "user": study.user.name if study.user else None, "project": study.project.name if study.project else None,
         "state": state(study, runs), "n": len(runs), "done": done, "progress": f"{done} of {len(runs)}",
         "counts": c, "estimate_s": study.estimate_s, "base_recipe": study.base_recipe,
         "created_at": aware(study.created_at).isoformat() if study.created_at else None,
         "finished_at": _finished(runs)}
    if with_grid:
        d["runs"] = [{"run_id": r.id, "status": r.status, "point": json.loads(r.study_point or "{}"),
                      "recipe_summary": r.recipe_summary, "error": r.error_message,
                      **{k: getattr(r, k) for k in METRICS}} for r in runs]
        d["grid"] = grid_rows(d["runs"])
    return d


def _finished(runs: list[Run]) -> str | None:
    if not runs or any(r.status not in TERMINAL for r in runs):
        return None
    ends = [aware(r.finished_at) for r in runs if r.finished_at is not None]
    return max(ends).isoformat() if ends else None


def grid_rows(runs: list[dict]) -> list[dict]:
    """One row per grid point (seeds aside): its axis values, the seeds and statuses of its runs, and
    mean ± sample sd (n, succeeded runs) of each headline metric."""
    rows: dict[str, dict] = {}
    for r in runs:
        point = {k: v for k, v in r["point"].items() if k != SEED}
        row = rows.setdefault(point_text(point), {"point": point, "runs": [], "seeds": [], "statuses": []})
        row["runs"].append(r["run_id"])
        row["seeds"].append(r["point"].get(SEED))
        row["statuses"].append(r["status"])
        row.setdefault("_ok", []).append(r if r["status"] == "succeeded" else None)
    out = []
    for row in rows.values():
        ok = [r for r in row.pop("_ok") if r is not None]
        for k in METRICS:
            sp = spread(r[k] for r in ok)
            row[k] = {"mean": sp.mean, "sd": sp.sd, "n": sp.n}
        out.append(row)
    return out


def list_studies(s: Session, projects: tuple[str, ...] | None = None, limit: int = 50) -> list[dict]:
    studies = list(s.scalars(_scoped(select(Study), projects).order_by(Study.created_at.desc()).limit(limit)))
    return [study_to_dict(st, study_runs(s, st.id), with_grid=False) for st in studies]


def request_cancel_study(s: Session, study_id: str) -> list[str]:
    """Flag the study cancelled; returns the ids of its runs that have not ended (to cancel each)."""
    study = get_study(s, study_id)
    study.cancel_requested = True
    return [r.id for r in study_runs(s, study_id) if r.status not in TERMINAL]


def reset_failed_runs(s: Session, study_id: str) -> list[str]:
    """Put the study's failed and cancelled runs back in the queue (same run, same grid point, its error
    cleared); returns their ids. Succeeded runs are kept as they are."""
    study = get_study(s, study_id)
    study.cancel_requested = False
    again = []
    for r in study_runs(s, study_id):
        if r.status in ("failed", "cancelled"):
            r.status, r.progress, r.stage = "queued", 0.0, "queued again (study re-run)"
            r.error_type = r.error_message = r.error_traceback = None
            r.cancel_requested, r.attempts = False, 0
            r.started_at = r.finished_at = r.heartbeat_at = None
            r.result = None
            for k in (*METRICS, "mean_topk_agreement"):
                setattr(r, k, None)
            again.append(r.id)
    return again


def past_run_seconds(s: Session, model: str, techniques: str, limit: int = 20) -> list[float]:
    """Total recorded stage seconds (result timings) of the latest succeeded runs of `model` with these
    techniques — what a new run of that kind is expected to cost."""
    q = (select(Run.result).where(Run.model_ref == model, Run.status == "succeeded", Run.techniques == techniques)
         .order_by(Run.finished_at.desc()).limit(limit))
    out = []
    for result in s.scalars(q):
        timings = (result or {}).get("timings") or {}
        if timings:
            out.append(float(sum(v for v in timings.values() if isinstance(v, (int, float)))))
    return out


def mark_finished(s: Session, study_id: str) -> None:
    study = get_study(s, study_id)
    if study.finished_at is None and all(r.status in TERMINAL for r in study_runs(s, study_id)):
        study.finished_at = utcnow()
