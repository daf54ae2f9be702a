"""End to end through real Celery workers: results land in the db, progress is monotonic, cancel
works, a SIGKILLed worker does not leave a run stuck or half-stored, many jobs all finish."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from moeq.db.repository.results import result_json
from moeq.db.repository.runs import get_run, progress_history
from moeq.jobs.submit import cancel, submit
from moeq.contract.errors import RecipeError
from tests.contract import validate_result
from tests.jobs.conftest import SLOW, TINY, wait_for

pytestmark = pytest.mark.services


def test_worker_runs_a_job_end_to_end(cluster):
    settings, store, workers = cluster
    workers.start("w1")
    rid = submit(settings, store, TINY)
    assert wait_for(store, rid, ("succeeded", "failed")) == "succeeded"
    with store.session() as s:
        run = get_run(s, rid)
        result = result_json(run)
        history = [f for f, _ in progress_history(s, rid)]
    n_experts = len(result["expert_stats"])
    validate_result(result)
    assert history and history == sorted(history) and run.progress == 1.0
    assert n_experts == 3 * 8 and run.worker_host and run.code_version


def test_bad_recipe_is_rejected_before_queuing(cluster):
    settings, store, _ = cluster
    with pytest.raises(RecipeError, match="weights.bits"):
        submit(settings, store, {**TINY, "weights": {"bits": 5}})
    from moeq.db.models import Run

    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Run)) == 0


def test_cancel_a_running_job(cluster):
    settings, store, workers = cluster
    workers.start("w1")
    rid = submit(settings, store, SLOW)
    wait_for(store, rid, ("running",))
    time.sleep(1.0)
    assert cancel(settings, store, rid) == "running"
    assert wait_for(store, rid, ("cancelled", "succeeded", "failed")) == "cancelled"
    with store.session() as s:
        assert get_run(s, rid).result is None


def test_killed_worker_leaves_no_stuck_or_partial_run(cluster):
    settings, store, workers = cluster
    first = workers.start("victim")
    rid = submit(settings, store, SLOW)
    wait_for(store, rid, ("running",))
    time.sleep(1.0)
    workers.kill(first)
    workers.start("rescuer")
    status = wait_for(store, rid, ("succeeded", "failed"), timeout=240)
    with store.session() as s:
        run = get_run(s, rid)
        if status == "failed":
            assert run.error_type == "WorkerLost" and run.result is None and run.kl is None
        else:
            assert run.attempts == 2 and run.result is not None and run.kl is not None
            history = progress_history(s, rid)  # the retry continues the bar and says which attempt it is
            assert [f for f, _ in history] == sorted(f for f, _ in history)
            assert any(stage.startswith("attempt 2 · ") for _, stage in history)


def test_twenty_jobs_on_two_workers_all_finish(cluster):
    settings, store, workers = cluster
    workers.start("w1")
    workers.start("w2")
    ids = [submit(settings, store, {**TINY, "seed": i}) for i in range(20)]
    statuses = [wait_for(store, rid, ("succeeded", "failed"), timeout=300) for rid in ids]
    with store.session() as s:
        errors = [(rid[:8], r.error_type, r.error_message) for rid in ids if (r := get_run(s, rid)).status != "succeeded"]
    assert statuses == ["succeeded"] * 20, errors
    with store.session() as s:
        hosts = {get_run(s, rid).worker_host for rid in ids}
    assert len(hosts) == 2
