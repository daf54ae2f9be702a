"""Studies in the store (SQLite and PostgreSQL): grid rows as mean ± sd over seeds, progress, cancel
and re-run bookkeeping, project scoping, and the 0004 migration from a database of the current (0003)
schema with runs in it."""

from __future__ import annotations

import statistics
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from moeq.db.engine import make_engine
from moeq.db.migrate import current_revision, downgrade, upgrade
from moeq.db.models import Run
from moeq.db.repository.runs import create_run
from moeq.db.repository.studies import (StudyNotFound, create_study, get_study, link_run, list_studies,
                                        request_cancel_study, reset_failed_runs, resolve_study_id, study_runs,
                                        study_to_dict)

from tests.db.conftest import db_url, store  # noqa: F401  (the SQLite + PostgreSQL fixtures)

RECIPE = {"model": "tiny-mixtral", "weights": {"bits": 4}, "seed": 0}


def _study(store, points, outcomes, project="default"):
    """A study with one run per point; outcomes[i] = (status, avg_accuracy, kl)."""
    with store.session() as s:
        sid = create_study(s, name="t", model="tiny-mixtral", base_recipe=RECIPE, axes={"bits": [2, 4], "seed": [0, 1]},
                           estimate_s=10.0, project=project).id
        for point, (status, acc, kl) in zip(points, outcomes):
            run = create_run(s, {**RECIPE, "seed": point["seed"]}, summary="s", techniques="rtn", project=project)
            run.status, run.avg_accuracy, run.kl, run.avg_weight_bits = status, acc, kl, float(point["bits"])
            if status == "failed":
                run.error_type, run.error_message = "WorkerLost", "worker w1 was lost"
            link_run(s, run.id, sid, point)
    return sid


POINTS = [{"bits": 2, "seed": 0}, {"bits": 2, "seed": 1}, {"bits": 4, "seed": 0}, {"bits": 4, "seed": 1},
          {"bits": 4, "seed": 2}]


def test_grid_rows_are_mean_and_sd_over_seeds_of_succeeded_runs(store):
    sid = _study(store, POINTS, [("succeeded", 0.5, 0.2), ("succeeded", 0.6, 0.3), ("succeeded", 0.8, 0.01),
                                 ("succeeded", 0.9, 0.02), ("failed", None, None)])
    with store.session() as s:
        d = study_to_dict(get_study(s, sid), study_runs(s, sid))
    assert d["n"] == 5 and d["progress"] == "5 of 5" and d["state"] == "finished" and d["counts"]["failed"] == 1
    rows = {r["point"]["bits"]: r for r in d["grid"]}
    assert rows[2]["avg_accuracy"] == {"mean": pytest.approx(0.55), "sd": pytest.approx(statistics.stdev([0.5, 0.6])),
                                       "n": 2}
    assert rows[4]["seeds"] == [0, 1, 2] and rows[4]["avg_accuracy"]["n"] == 2  # the failed seed is not averaged
    assert rows[4]["kl"]["mean"] == pytest.approx(0.015)
    assert [r["error"] for r in d["runs"] if r["status"] == "failed"] == ["worker w1 was lost"]


def test_progress_cancel_and_rerun_only_what_failed(store):
    sid = _study(store, POINTS[:4], [("succeeded", 0.5, 0.2), ("failed", None, None), ("running", None, None),
                                     ("queued", None, None)])
    with store.session() as s:
        d = study_to_dict(get_study(s, sid), study_runs(s, sid))
        assert d["progress"] == "2 of 4" and d["state"] == "running"
        open_runs = request_cancel_study(s, sid)
        assert len(open_runs) == 2
        for rid in open_runs:
            s.get(Run, rid).status = "cancelled"
    with store.session() as s:
        assert study_to_dict(get_study(s, sid), study_runs(s, sid))["state"] == "cancelled"
        again = reset_failed_runs(s, sid)
        runs = {r.id: r for r in study_runs(s, sid)}
        assert len(again) == 3 and all(runs[r].status == "queued" and runs[r].error_message is None for r in again)
        assert [r.status for r in runs.values() if r.id not in again] == ["succeeded"]
        assert study_to_dict(get_study(s, sid), study_runs(s, sid))["state"] == "running"  # one done, three queued again


def test_studies_belong_to_projects(store):
    mine = _study(store, POINTS[:1], [("queued", None, None)], project="moe")
    other = _study(store, POINTS[:1], [("queued", None, None)], project="dense")
    with store.session() as s:
        assert [d["study_id"] for d in list_studies(s, ("moe",))] == [mine]
        assert resolve_study_id(s, mine[:8], ("moe",)) == mine
        with pytest.raises(StudyNotFound):
            resolve_study_id(s, other[:8], ("moe",))
        assert {d["study_id"] for d in list_studies(s)} == {mine, other}


def test_upgrade_from_0003_keeps_runs_and_adds_studies(db_url):
    engine = make_engine(db_url)
    upgrade(engine, "0003")
    meta = sa.MetaData()
    meta.reflect(engine)
    with engine.begin() as conn:
        conn.execute(meta.tables["runs"].insert(), [{"id": "a" * 32, "model_ref": "tiny-mixtral", "recipe": RECIPE,
                                                     "recipe_summary": "W4", "techniques": "rtn", "status": "succeeded",
                                                     "progress": 1.0, "stage": "", "cancel_requested": False,
                                                     "save_model": False, "attempts": 1, "code_version": "",
                                                     "notes": "", "tags": "", "avg_accuracy": 0.5,
                                                     "created_at": datetime.now(timezone.utc)}])
    upgrade(engine)
    assert current_revision(engine) == "0005"
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT id, study_id, study_point, avg_accuracy FROM runs")).one()
    assert tuple(row) == ("a" * 32, None, None, 0.5)
    assert "studies" in sa.inspect(engine).get_table_names()
    downgrade(engine, "0003")
    assert "studies" not in sa.inspect(engine).get_table_names()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM runs")).scalar() == 1
    upgrade(engine)
    engine.dispose()
