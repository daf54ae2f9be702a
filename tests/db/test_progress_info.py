"""Honest progress: elapsed time and an ETA from the attempt's own rate; a requeued run continues the
bar from where it was (never back to 0) and says which attempt is running."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from moeq.db.models import Run, utcnow
from moeq.db.repository.progress import progress_info
from moeq.db.repository.runs import claim_run, create_run, reap_stale, update_progress
from moeq.jobs.execute import ProgressWriter

RECIPE = {"model": "tiny-mixtral"}


def _new(store) -> str:
    with store.session() as s:
        return create_run(s, dict(RECIPE), summary="W4A16 rtn", techniques="rtn").id


def test_eta_extrapolates_the_average_rate(store):
    rid = _new(store)
    with store.session() as s:
        assert progress_info(s, rid)["eta_s"] is None and progress_info(s, rid)["elapsed_s"] is None
        claim_run(s, rid, "host", "cpu")
        update_progress(s, rid, 0.25, "quantize: layer 1/4", attempt=1)
        s.execute(update(Run).where(Run.id == rid).values(started_at=utcnow() - timedelta(seconds=30)))
    with store.session() as s:
        p = progress_info(s, rid)
    assert p["attempt"] == 1 and 29 <= p["elapsed_s"] <= 40
    assert 85 <= p["eta_s"] <= 125  # 30 s for a quarter → about 90 s to go


def test_a_requeued_run_continues_from_where_it_was(store):
    rid = _new(store)
    with store.session() as s:
        claim_run(s, rid, "lost-host", "cpu")
        update_progress(s, rid, 0.6, "evaluate", attempt=1)
    with store.session() as s:
        assert reap_stale(s, lease_seconds=-1, requeue=True) == [rid]
    with store.session() as s:
        claim_run(s, rid, "rescuer", "cpu")
    writer = ProgressWriter(store, rid, attempt=2, base=0.6)
    seen = []
    writer.echo = lambda stage, f: seen.append((stage, f))
    for f in (0.0, 0.5, 1.0):
        writer("quantize", f)
    assert [round(f, 3) for _, f in seen] == [0.6, 0.8, 1.0]
    assert all(stage.startswith("attempt 2 · ") for stage, _ in seen)
    with store.session() as s:
        p = progress_info(s, rid)
    assert p["attempt"] == 2 and p["fraction"] == 1.0


def test_eta_never_promises_less_than_the_measured_stages_ahead(store):
    """The bar says 95 % (the plan underweighted evaluation): the rate says ~5 s, but evaluation took 40 s
    on the last run of the same model and techniques, so the ETA says at least that."""
    with store.session() as s:
        prev = create_run(s, dict(RECIPE), summary="W4A16 rtn", techniques="rtn")
        prev.status, prev.finished_at = "succeeded", utcnow()
        prev.result = {"timings": {"load_s": 1.0, "fp_evaluate_s": 5.0, "calibrate_s": 2.0, "quantize_s": 10.0,
                                   "evaluate_s": 40.0}}
    rid = _new(store)
    with store.session() as s:
        claim_run(s, rid, "host", "cpu")
        update_progress(s, rid, 0.5, "FP reference evaluate: perplexity/routing", attempt=1)
        update_progress(s, rid, 0.95, "quantize: layer 4/4", attempt=1)
        s.execute(update(Run).where(Run.id == rid).values(started_at=utcnow() - timedelta(seconds=95)))
    with store.session() as s:
        p = progress_info(s, rid)
    assert p["eta_s"] >= 40.0  # evaluation is still ahead (the rate alone said about 5 s)
