"""Item 10: reaper-failed runs are finished, search wildcards are literal, exports leave no folders."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

from moeq.db.models import utcnow
from moeq.db.repository.queries import RunFilter, list_runs
from moeq.db.repository.runs import create_run, get_run, set_notes


def test_reaper_failure_sets_finished_at_and_stage(team):
    from moeq.jobs.reaper import reap

    settings, store = team
    with store.session() as s:
        run = create_run(s, {"model": "m"}, summary="x", techniques="rtn")
        run.status, run.attempts, run.worker_host = "running", settings.max_attempts, "gpu-1"
        run.heartbeat_at = run.started_at = utcnow() - timedelta(hours=1)
        rid = run.id
    reap(settings, store, celery_app=object())
    with store.session() as s:
        run = get_run(s, rid)
        assert run.status == "failed" and run.finished_at is not None
        assert not run.stage.startswith("requeued")


def test_search_treats_percent_and_underscore_literally(team):
    settings, store = team
    with store.session() as s:
        a = create_run(s, {"model": "m"}, summary="x", techniques="rtn").id
        b = create_run(s, {"model": "m"}, summary="x", techniques="rtn").id
        set_notes(s, a, notes="gain 50% at w_4")
        set_notes(s, b, notes="gain 50 at wx4")
    with store.session() as s:
        assert [r["run_id"] for r in list_runs(s, RunFilter(search="50%"))[0]] == [a]
        assert [r["run_id"] for r in list_runs(s, RunFilter(search="w_4"))[0]] == [a]


def test_exports_reuse_one_private_folder_removed_on_close(team):
    from moeq.app.services import AppServices

    settings, store = team
    before = set(Path(tempfile.gettempdir()).glob("moeq-export-*"))
    svc = AppServices(settings=settings, store=store)
    files = [svc.export([{"run_id": "a"}], fmt) for fmt in ("csv", "json", "csv")]
    assert len({f.parent for f in files}) == 1 and all(f.is_file() for f in files)
    svc.close()
    assert set(Path(tempfile.gettempdir()).glob("moeq-export-*")) == before
