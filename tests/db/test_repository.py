"""Repository behaviour on SQLite and PostgreSQL: migrations, run lifecycle, results, queries, users."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, select

from moeq.db.engine import DatabaseError, check_connection, make_engine
from moeq.db.migrate import current_revision, downgrade, upgrade
from moeq.db.models import Run
from moeq.db.repository.queries import RunFilter, compare_runs, list_runs
from moeq.db.repository.results import result_json, store_result
from moeq.db.repository.runs import (RunNotFound, Superseded, cancel_requested, claim_run, create_run, get_run,
                                heartbeat, mark_failed, progress_history, reap_stale, request_cancel, resolve_run_id,
                                set_notes, update_progress)
from moeq.db.repository.users import (AuthError, add_member, ensure_user, require_access, user_projects,
                                 verify_user)

RECIPE = {"model": "tiny-mixtral", "weights": {"bits": 4}}
RESULT = {
    "model": "tiny-mixtral", "recipe": RECIPE,
    "metrics": {"perplexity": 7.9, "fp_perplexity": 7.6, "kl": 0.012, "accuracy": {"add": 0.6},
                "accuracy_stderr": {"add": 0.05}, "fp_accuracy": {"add": 0.7}, "avg_accuracy": 0.6,
                "routing": {"layers": [0, 1], "topk_agreement": [0.97, 0.95], "top1_agreement": [0.98, 0.9],
                            "mean_topk_agreement": 0.96, "kl": [0.01, float("nan")]}},
    "bits": {"avg_weight_bits": 3.5, "bits_per_param_with_overhead": 3.6},
    "calibration": {"num_sequences": 4},
    "expert_stats": [{"layer": 0, "expert": e, "bits": 4, "group_size": 128, "calib_tokens": 10 * e,
                      "weight_error": 0.1, "fallback": None, "fallback_reason": None} for e in range(4)],
    "timings": {"quantize_s": 1.0}, "environment": {"device": "cpu", "torch": "2.13.0", "moeq": "0.1.0"},
    "artifacts": [{"kind": "quantized_model", "path": "/tmp/x", "bytes": 5_000_000_000, "sha256": "ab" * 32}],
}


def _new(store, **kw) -> str:
    with store.session() as s:
        return create_run(s, dict(RECIPE, **kw.pop("recipe", {})), summary=kw.pop("summary", "W4A16 rtn"),
                          techniques=kw.pop("techniques", "rtn"), **kw).id


def test_migrations_upgrade_an_empty_database_and_downgrade(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    assert current_revision(engine) == "0005"
    tables = set(inspect(engine).get_table_names())
    assert {"users", "projects", "project_members", "runs", "run_progress"} <= tables
    assert not {"models", "run_metrics", "routing_stats", "expert_stats", "artifacts"} & tables  # nothing read them
    assert {c["name"] for c in inspect(engine).get_columns("runs")} >= {"result", "avg_weight_bits", "kl", "origin",
                                                                        "owner_pid", "owner_start", "archived"}
    assert "ix_runs_status_created" in {i["name"] for i in inspect(engine).get_indexes("runs")}
    assert "studies" in tables and {"study_id", "study_point"} <= {c["name"] for c in inspect(engine).get_columns("runs")}
    downgrade(engine, "0002")
    assert {"models", "run_metrics", "routing_stats", "expert_stats", "artifacts"} <= set(inspect(engine).get_table_names())
    upgrade(engine)
    downgrade(engine, "base")
    assert current_revision(engine) is None
    assert "runs" not in set(inspect(engine).get_table_names())
    upgrade(engine)
    engine.dispose()


def test_unreachable_database_is_a_clear_error():
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(DatabaseError, match="cannot reach the database at postgresql"):
        check_connection(engine)


def test_a_run_is_claimed_once_and_progress_never_goes_back(store):
    rid = _new(store)
    with store.session() as s:
        assert claim_run(s, rid, "host-a", "cpu")
        assert not claim_run(s, rid, "host-b", "cpu")
        for frac, stage in [(0.1, "load"), (0.5, "quantize"), (0.3, "late report"), (0.9, "evaluate")]:
            update_progress(s, rid, frac, stage)
    with store.session() as s:
        run = get_run(s, rid)
        assert run.worker_host == "host-a" and run.attempts == 1 and run.progress == 0.9
        fractions = [f for f, _ in progress_history(s, rid)]
    assert fractions == sorted(fractions)


def test_result_is_stored_with_its_headline_columns_and_round_trips(store):
    rid = _new(store)
    with store.session() as s:
        claim_run(s, rid, "h", "cpu")
        store_result(s, rid, RESULT)
    with store.session() as s:
        run = get_run(s, rid)
        assert run.status == "succeeded" and run.avg_accuracy == 0.6 and run.mean_topk_agreement == 0.96
        assert run.perplexity == 7.9 and run.kl == 0.012 and run.avg_weight_bits == 3.5
        out = result_json(run)
    assert out["run_id"] == rid and out["metrics"]["routing"]["kl"][1] is None  # NaN stored as null, no crash
    assert out["expert_stats"] == RESULT["expert_stats"] and out["bits"] == RESULT["bits"]
    assert out["artifacts"][0]["bytes"] == 5_000_000_000


def test_cancel_a_queued_run_and_flag_a_running_one(store):
    queued, running = _new(store), _new(store)
    with store.session() as s:
        claim_run(s, running, "h", "cpu")
        assert request_cancel(s, queued) == "cancelled"
        assert request_cancel(s, running) == "running"
        assert get_run(s, running).cancel_requested
        assert not claim_run(s, queued, "h", "cpu")


def test_stale_running_runs_are_failed_or_requeued(store):
    a, b = _new(store), _new(store)
    with store.session() as s:
        claim_run(s, a, "dead-host", "cpu")
        claim_run(s, b, "dead-host", "cpu")
    with store.session() as s:
        assert reap_stale(s, lease_seconds=3600) == []
        assert sorted(reap_stale(s, lease_seconds=-1, requeue=False)) == sorted([a, b])
        run = get_run(s, a)
        assert run.status == "failed" and run.error_type == "WorkerLost" and "dead-host" in run.error_message
        assert run.result is None


def test_list_filter_search_sort_and_compare(store):
    ids = []
    for i, (model, tech, acc) in enumerate([("m1", "rtn", 0.5), ("m1", "gptq", 0.7), ("m2", "gptq,rotation", 0.6)]):
        rid = _new(store, recipe={"model": model}, techniques=tech, summary=f"W4A16 {tech}")
        ids.append(rid)
        with store.session() as s:
            claim_run(s, rid, "h", "cpu")
            store_result(s, rid, {**RESULT, "metrics": {**RESULT["metrics"], "avg_accuracy": acc}})
    with store.session() as s:
        set_notes(s, ids[0], notes="baseline for the paper", tags=["paper", "baseline"])
        rows, total = list_runs(s, RunFilter(model="m1"))
        assert total == 2 and {r["run_id"] for r in rows} == set(ids[:2])
        rows, _ = list_runs(s, RunFilter(technique="gptq", sort="accuracy"))
        assert [r["run_id"] for r in rows] == [ids[1], ids[2]]
        rows, total = list_runs(s, RunFilter(search="PAPER"))
        assert total == 1 and rows[0]["tags"] == ["baseline", "paper"]
        rows, total = list_runs(s, RunFilter(sort="accuracy", descending=False, limit=1))
        assert total == 3 and rows[0]["run_id"] == ids[0]
        both = compare_runs(s, [ids[2], ids[0]])
        assert [r["run_id"] for r in both] == [ids[2], ids[0]] and both[0]["result"]["bits"]["avg_weight_bits"] == 3.5
        with pytest.raises(RunNotFound):
            compare_runs(s, [ids[0], "nope"])


def test_users_passwords_and_project_membership(store):
    with store.session() as s:
        ensure_user(s, "alice", "correct horse")
        ensure_user(s, "bob", "battery staple")
        ensure_user(s, "root", "admin password", admin=True)
        add_member(s, "vision", "alice")
        add_member(s, "moe", "bob")
        add_member(s, "moe", "alice")
    with store.session() as s:
        assert verify_user(s, "alice", "correct horse") and not verify_user(s, "alice", "wrong")
        assert not verify_user(s, "mallory", "x")
        assert s.scalar(select(Run).limit(1)) is None
        stored = ensure_user(s, "alice").password_hash
        assert "correct horse" not in stored and stored.startswith("$argon2id$")
        assert user_projects(s, "alice") == ["moe", "vision"] and user_projects(s, "bob") == ["moe"]
        assert user_projects(s, "root") == ["moe", "vision"]
        require_access(s, "bob", "moe")
        with pytest.raises(AuthError, match="not a member"):
            require_access(s, "bob", "vision")


def test_project_scoped_listing_hides_other_projects(store):
    a = _new(store, user="alice", project="vision")
    b = _new(store, user="bob", project="moe")
    with store.session() as s:
        rows, total = list_runs(s, RunFilter(projects=("moe",)))
        assert total == 1 and rows[0]["run_id"] == b
        with pytest.raises(RunNotFound):
            compare_runs(s, [a], projects=("moe",))


def test_a_superseded_attempt_can_no_longer_write(store):
    """A slow worker presumed lost: its run is requeued and claimed again; the first attempt's late
    progress, heartbeat, failure and result must not touch the second attempt's run."""
    rid = _new(store)
    with store.session() as s:
        claim_run(s, rid, "slow-host", "cpu")
    with store.session() as s:
        assert reap_stale(s, lease_seconds=-1, requeue=True) == [rid]
        assert cancel_requested(s, rid, attempt=1)  # the slow worker is told to stop
        claim_run(s, rid, "rescuer", "cpu")
    with store.session() as s:
        update_progress(s, rid, 0.7, "late report", attempt=1)
        heartbeat(s, rid, attempt=1)
        mark_failed(s, rid, "RuntimeError", "late failure", attempt=1)
        with pytest.raises(Superseded, match="attempt 1 was superseded"):
            store_result(s, rid, RESULT, attempt=1)
    with store.session() as s:
        run = get_run(s, rid)
        assert (run.status, run.attempts, run.worker_host, run.progress) == ("running", 2, "rescuer", 0.0)
        assert run.error_type is None and run.result is None
        assert not cancel_requested(s, rid, attempt=2)
        update_progress(s, rid, 0.5, "quantize", attempt=2)
        store_result(s, rid, RESULT, attempt=2)
    with store.session() as s:
        run = get_run(s, rid)
        assert run.status == "succeeded" and run.progress == 1.0
        assert [st for _, st in progress_history(s, rid)] == ["quantize"]


def test_run_ids_resolve_from_unique_prefixes(store):
    a, b = _new(store, run_id="abcd0000" + "0" * 24), _new(store, run_id="abcd1111" + "1" * 24)
    with store.session() as s:
        assert resolve_run_id(s, "abcd0") == a and resolve_run_id(s, b) == b
        with pytest.raises(RunNotFound, match="ambiguous"):
            resolve_run_id(s, "abcd")
        with pytest.raises(RunNotFound, match="matches no run"):
            resolve_run_id(s, "ffff")
