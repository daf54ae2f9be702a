"""Faults around a run: the database going away mid-run, broker messages lost with a restart."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from moeq.db.repository.runs import get_run, progress_history
from moeq.db.store import Store
from moeq.jobs.execute import execute_run
from moeq.jobs.settings import load_settings
from moeq.jobs.submit import create, submit
from tests.jobs.conftest import TINY, wait_for


class FlakyStore(Store):
    """A store whose sessions fail while `down` is positive (each failed session counts down)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.down = 0
        self.failures = 0

    def session(self):
        if self.down > 0:
            self.down -= 1
            self.failures += 1
            raise OperationalError("SELECT 1", {}, Exception("connection refused (simulated outage)"))
        return super().session()


def test_database_outage_mid_run_loses_nothing(tiny_zoo, tmp_path):
    home = tmp_path / "home"
    settings = load_settings({"MOEQ_HOME": str(home), "MOEQ_DATABASE_URL": f"sqlite:///{home / 'db.sqlite'}"})
    store = FlakyStore(settings.database_url)
    (home / "zoo").mkdir(parents=True, exist_ok=True)
    (home / "zoo" / "tiny-mixtral").symlink_to(tiny_zoo / "tiny-mixtral")
    rid = create(store, TINY)
    calls = {"n": 0}

    def outage(stage, fraction):
        calls["n"] += 1
        if calls["n"] == 3:  # the db goes away for a while in the middle of the run
            store.down = 6
    result = execute_run(settings, rid, store=store, progress=outage)
    assert store.failures == 6
    assert result["status"] == "succeeded" and result["metrics"]["kl"] is not None
    with store.session() as s:
        run = get_run(s, rid)
        assert run.status == "succeeded" and run.result is not None
        fractions = [f for f, _ in progress_history(s, rid)]
    assert fractions == sorted(fractions)


@pytest.mark.services
def test_runs_whose_messages_were_lost_are_resent(tmp_path):
    """Redis keeps nothing on disk here: a restart loses queued messages. The worker's reaper re-sends
    runs queued for longer than MOEQ_REQUEUE_S, and atomic claiming makes duplicates harmless."""
    import random

    import redis

    from tests.jobs.conftest import Workers, _env

    n = random.randint(1, 15)
    client = redis.Redis(host="127.0.0.1", port=6379, db=n)
    client.flushdb()
    home = tmp_path / "home"
    home.mkdir()
    env = _env(home, f"sqlite:///{home / 'moeq.sqlite'}", f"redis://127.0.0.1:6379/{n}")
    env["MOEQ_REQUEUE_S"] = "2"
    settings = load_settings(env)
    store = Store(settings.database_url)
    workers = Workers(env)
    try:
        rid = submit(settings, store, TINY)
        client.flushdb()  # the broker "restarts" and forgets the queued message
        workers.start("after-restart")
        assert wait_for(store, rid, ("succeeded", "failed"), timeout=180) == "succeeded"
    finally:
        workers.stop_all()
        store.dispose()
