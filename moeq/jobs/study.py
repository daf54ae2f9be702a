"""Launch, cancel and re-run a study: every recipe of the grid is admitted before anything is stored;
the runs are created, linked to the study and sent to the workers as one Celery group (each task
carries only its run id, as a single run's does, so a lost worker's run is requeued or failed by the
reaper like any other). Re-running re-queues only the runs that failed or were cancelled."""

from __future__ import annotations

import logging
import statistics

from moeq.contract.vocabulary import recipe_tags
from moeq.db.repository.runs import set_task_id
from moeq.db.repository.studies import (create_study, get_study, link_run, past_run_seconds,
                                        request_cancel_study, reset_failed_runs)
from moeq.db.store import Store
from moeq.jobs.settings import Settings
from moeq.jobs.submit import admit_recipe, cancel, create

log = logging.getLogger(__name__)


def estimate_seconds(store: Store, recipes: list) -> tuple[float | None, int]:
    """(expected worker seconds of the whole grid, how many of its runs had a recorded cost): each run
    costs the median total stage seconds of the latest succeeded runs of its model and techniques;
    None when no run of the grid has any such history."""
    total, known, cache = 0.0, 0, {}
    with store.session() as s:
        for r in recipes:
            key = (r.model, recipe_tags(r))
            if key not in cache:
                past = past_run_seconds(s, *key)
                cache[key] = statistics.median(past) if past else None
            if cache[key] is not None:
                total += cache[key]
                known += 1
    if not known:
        return None, 0
    return total * len(recipes) / known, known  # runs without history cost the mean of those with


def admit_grid(settings: Settings, store: Store, recipes: list[dict], scope: tuple[str, ...] | None = None) -> list:
    """Every grid recipe parsed and checked (one MoeqError line naming the grid point otherwise)."""
    from moeq.contract.errors import MoeqError

    out = []
    for i, recipe in enumerate(recipes):
        try:
            out.append(admit_recipe(settings, recipe, store, scope))
        except MoeqError as exc:
            raise MoeqError(f"grid point {i + 1} of {len(recipes)}: {exc}") from None
    return out


def _send_group(settings: Settings, store: Store, run_ids: list[str], celery_app=None) -> str | None:
    """One Celery group of the runs' tasks (by name, with only the run id); records each task id."""
    from celery import group

    from moeq.jobs.celery_app import QUEUE, TASK_NAME, make_celery

    if not run_ids:
        return None
    app = celery_app or make_celery(settings)
    res = group(app.signature(TASK_NAME, args=[rid], queue=QUEUE) for rid in run_ids).apply_async()
    with store.session() as s:
        for rid, child in zip(run_ids, res.results):
            set_task_id(s, rid, child.id)
    return res.id


def launch_study(settings: Settings, store: Store, *, name: str, model: str, base_recipe: dict, axes: dict,
                 points: list[dict], recipes: list, estimate_s: float | None, user: str | None = None,
                 project: str | None = None, celery_app=None) -> tuple[str, list[str]]:
    """Create the study and its runs (admitted Recipes, one per point), queue them as one group;
    returns (study id, run ids)."""
    from moeq.db.repository.users import DEFAULT_PROJECT, LOCAL_USER

    with store.session() as s:
        study_id = create_study(s, name=name, model=model, base_recipe=base_recipe, axes=axes, estimate_s=estimate_s,
                                user=user or LOCAL_USER, project=project or DEFAULT_PROJECT).id
    run_ids = []
    for point, recipe in zip(points, recipes):
        rid = create(store, recipe, user=user, project=project, settings=settings)
        with store.session() as s:
            link_run(s, rid, study_id, point)
        run_ids.append(rid)
    group_id = _send_group(settings, store, run_ids, celery_app)
    with store.session() as s:
        get_study(s, study_id).celery_group_id = group_id
    log.info("study %s: %d runs queued as group %s", study_id, len(run_ids), group_id)
    return study_id, run_ids


def cancel_study(settings: Settings, store: Store, study_id: str, celery_app=None) -> list[str]:
    """Cancel every run of the study that has not ended; returns their ids."""
    with store.session() as s:
        open_runs = request_cancel_study(s, study_id)
    for rid in open_runs:
        cancel(settings, store, rid, celery_app)
    return open_runs


def rerun_study(settings: Settings, store: Store, study_id: str, celery_app=None) -> list[str]:
    """Queue again (as one group) only the study's failed and cancelled runs; returns their ids."""
    with store.session() as s:
        again = reset_failed_runs(s, study_id)
    _send_group(settings, store, again, celery_app)
    return again

