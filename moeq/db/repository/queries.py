"""Listing, filtering, searching, sorting and comparing runs (indexed columns; fast at 10k+ runs)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from moeq.contract.stats import against_baseline
from moeq.db.models import Project, Run, User
from moeq.db.repository.results import run_to_dict
from moeq.db.repository.runs import RunNotFound

SORTABLE = {"created": Run.created_at, "accuracy": Run.avg_accuracy, "bits": Run.avg_weight_bits,
            "kl": Run.kl, "perplexity": Run.perplexity, "agreement": Run.mean_topk_agreement,
            "model": Run.model_ref, "status": Run.status}


@dataclass(frozen=True)
class RunFilter:
    model: str | None = None
    user: str | None = None
    project: str | None = None
    projects: tuple[str, ...] | None = None  # restrict to these (access control); None = all
    status: str | None = None
    technique: str | None = None
    search: str | None = None
    sort: str = "created"
    descending: bool = True
    limit: int = 50
    offset: int = 0
    archived: bool | None = False  # False: archived runs hidden; True: only archived ones; None: both


def _where(q, f: RunFilter):
    if f.model:
        q = q.where(Run.model_ref == f.model)
    if f.user:
        q = q.where(Run.user_id == select(User.id).where(User.name == f.user).scalar_subquery())
    if f.project:
        q = q.where(Run.project_id == select(Project.id).where(Project.name == f.project).scalar_subquery())
    if f.projects is not None:
        q = q.where(Run.project_id.in_(select(Project.id).where(Project.name.in_(f.projects))))
    if f.archived is not None:
        q = q.where(Run.archived.is_(True) if f.archived else Run.archived.is_not(True))
    if f.status:
        q = q.where(Run.status == f.status)
    if f.technique:
        q = q.where(Run.techniques.contains(f.technique))
    if f.search:  # % and _ in the search text are literal characters, not wildcards
        text = f.search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        like = f"%{text}%"
        columns = (func.lower(Run.recipe_summary), func.lower(Run.model_ref), func.lower(Run.notes),
                   func.lower(Run.tags), Run.id)
        q = q.where(or_(*(c.like(like, escape="\\") for c in columns)))
    return q


def list_runs(s: Session, f: RunFilter = RunFilter()) -> tuple[list[dict], int]:
    """(page of runs without their full results, total matching count)."""
    total = s.scalar(_where(select(func.count()).select_from(Run), f))
    column = SORTABLE.get(f.sort, Run.created_at)
    order = column.desc().nulls_last() if f.descending else column.asc().nulls_last()
    q = _where(select(Run), f).options(selectinload(Run.user), selectinload(Run.project)) \
        .order_by(order, Run.id).limit(max(1, min(f.limit, 1000))).offset(max(0, f.offset))
    return [run_to_dict(r, with_result=False) for r in s.scalars(q)], int(total or 0)


def compare_runs(s: Session, run_ids: list[str], projects: tuple[str, ...] | None = None,
                 paired: bool = True) -> list[dict]:
    """Full run dicts (with results) in the order given; unknown or inaccessible ids are errors. With
    `paired`, each carries "paired": its paired differences from the first run (moeq.contract.stats;
    None for the first)."""
    out = []
    for rid in run_ids:
        run = s.get(Run, rid)
        if run is None or (projects is not None and (run.project is None or run.project.name not in projects)):
            raise RunNotFound(f"no run with id {rid!r}")
        out.append(run_to_dict(run))
    if paired:
        for r, diff in zip(out, against_baseline(out)):
            r["paired"] = diff
    return out


def distinct_values(s: Session, column: str, projects: tuple[str, ...] | None = None) -> list[str]:
    """Distinct models / statuses for filter dropdowns, among the runs of `projects` (None: all)."""
    col = {"model": Run.model_ref, "status": Run.status}[column]
    q = select(col).distinct().order_by(col)
    if projects is not None:
        q = q.where(Run.project_id.in_(select(Project.id).where(Project.name.in_(projects))))
    return [v for v in s.scalars(q) if v]
