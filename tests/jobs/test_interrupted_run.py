"""A `moeq run` whose process ends is ended too: Ctrl-C (SIGINT) → cancelled, SIGTERM → failed:
interrupted, SIGKILL → failed: interrupted as soon as anything opens the store; and a `moeq serve`
started afterwards never re-runs it (the user did not queue it to a worker). Real processes, the
embedded SQLite store."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests.jobs.conftest import ROOT, SLOW


def _env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOEQ_")}
    env.update(MOEQ_HOME=str(home), MOEQ_HEARTBEAT_S="0.5", MOEQ_LEASE_S="2", MOEQ_REQUEUE_S="1",
               PYTHONPATH=str(ROOT), HF_HUB_DISABLE_PROGRESS_BARS="1", TOKENIZERS_PARALLELISM="false")
    return env


def _runs(home: Path) -> list[dict]:
    """(id, status, stage, attempts, error_type, has result) of every run, read without opening a Store
    (a Store would end a dead run itself: the test must see what the process left behind)."""
    import sqlite3

    db = home / "moeq.sqlite"
    if not db.exists():
        return []
    with sqlite3.connect(db) as c:
        try:
            rows = c.execute("select id, status, stage, attempts, error_type, result is not null, progress "
                             "from runs").fetchall()
        except sqlite3.OperationalError:  # the schema is being created
            return []
    keys = ("id", "status", "stage", "attempts", "error_type", "has_result", "progress")
    return [dict(zip(keys, r)) for r in rows]


def _start_run(home: Path, tmp_path: Path) -> tuple[subprocess.Popen, dict]:
    recipe = tmp_path / "slow.json"
    recipe.write_text(json.dumps(SLOW))
    log = open(tmp_path / "run.log", "wb")
    # Ctrl-C as from a terminal: a suite started as a background job (`cmd &` in a script) hands its
    # children SIGINT ignored, and a Python started so never raises KeyboardInterrupt
    proc = subprocess.Popen([sys.executable, "-m", "moeq.app.cli", "-q", "run", "--recipe", str(recipe)],
                            env=_env(home), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    log.close()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        runs = _runs(home)
        if runs and runs[0]["status"] == "running" and (runs[0]["progress"] or 0) > 0.02:
            return proc, runs[0]
        assert proc.poll() is None, (tmp_path / "run.log").read_text()
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("moeq run did not start its run")


@pytest.mark.parametrize("signum, status, stage, rc", [
    (signal.SIGINT, "cancelled", "cancelled: interrupted (Ctrl-C)", 130),
    pytest.param(signal.SIGTERM, "failed", "failed: interrupted (SIGTERM)", 143, marks=pytest.mark.slow)])
def test_ctrl_c_and_sigterm_end_the_run(tmp_path, signum, status, stage, rc):
    home = tmp_path / "home"
    proc, run = _start_run(home, tmp_path)
    proc.send_signal(signum)
    assert proc.wait(60) == rc, (tmp_path / "run.log").read_text()
    after = _runs(home)[0]
    assert (after["status"], after["stage"], after["error_type"], after["has_result"]) == (status, stage,
                                                                                          "Interrupted", 0)
    assert "interrupted" in (tmp_path / "run.log").read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigkill_is_found_and_serve_does_not_rerun_it(tmp_path, monkeypatch):
    home = tmp_path / "home"
    proc, run = _start_run(home, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    time.sleep(3)  # the heartbeat is now older than the lease (2 s): the old reaper requeued such a run
    assert _runs(home)[0]["status"] == "running"  # nothing could record the kill

    for k, v in _env(home).items():
        if k.startswith("MOEQ_"):
            monkeypatch.setenv(k, v)
    from moeq.app.server import serve
    from moeq.jobs.settings import load_settings

    demo, cleanup = serve(load_settings(), port=_free_port(), block=False)  # embedded worker + reaper
    try:
        after = _runs(home)[0]  # opening the store found the dead process
        assert (after["status"], after["stage"], after["error_type"]) == ("failed", "failed: interrupted",
                                                                          "Interrupted")
        time.sleep(8)  # several reaper sweeps and orphan re-sends later: still ended, never run again
        later = _runs(home)[0]
        assert (later["status"], later["attempts"], later["has_result"]) == ("failed", 1, 0), later
    finally:
        cleanup()


def test_cancel_says_what_it_did_for_a_killed_run(tmp_path, monkeypatch):
    """A run left "running" by a killed process on this host: `moeq runs cancel` says it had ended."""
    from moeq.app.cli import main
    from moeq.db.models import Run
    from moeq.db.repository.owners import CLI
    from moeq.db.store import Store
    from moeq.jobs.settings import load_settings

    monkeypatch.setenv("MOEQ_HOME", str(tmp_path / "home"))
    settings = load_settings()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store = Store(settings.database_url)
    from moeq.db.repository.runs import create_run

    with store.session() as s:
        run = create_run(s, {"model": "tiny-mixtral"}, summary="W4A16", techniques="rtn", origin=CLI)
        run.status, run.owner_pid, run.owner_start = "running", dead.pid, "0"
        run_id = run.id
    assert main(["runs", "cancel", run_id[:8]]) == 0
    with store.session() as s:
        ended = s.get(Run, run_id)
        assert (ended.status, ended.stage) == ("failed", "failed: interrupted")


def test_reaper_never_requeues_a_cli_run_of_another_host(tmp_path, monkeypatch):
    from moeq.db.models import Run, utcnow
    from moeq.db.repository.owners import CLI
    from moeq.db.repository.runs import create_run, orphaned_queued, reap_stale
    from moeq.db.store import Store
    from moeq.jobs.settings import load_settings

    monkeypatch.setenv("MOEQ_HOME", str(tmp_path / "home"))
    store = Store(load_settings().database_url)
    with store.session() as s:
        running = create_run(s, {"model": "tiny-mixtral"}, summary="W4A16", techniques="rtn", origin=CLI)
        running.status, running.worker_host = "running", "another-host"
        running.heartbeat_at = utcnow() - timedelta(seconds=600)
        queued = create_run(s, {"model": "tiny-mixtral"}, summary="W4A16", techniques="rtn", origin=CLI)
        queued.worker_host, queued.created_at = "another-host", utcnow() - timedelta(seconds=6000)
        ids = running.id, queued.id
    with store.session() as s:
        assert reap_stale(s, 60, requeue=True) == [ids[0]]
        assert ids[1] not in orphaned_queued(s, 60)  # never re-sent to a worker
    with store.session() as s:
        run = s.get(Run, ids[0])
        assert (run.status, run.stage, run.error_type) == ("failed", "failed: interrupted", "Interrupted")


def test_cancel_names_the_live_process_that_will_stop_the_run(tmp_path, monkeypatch):
    from moeq.db.repository.owners import CLI, owner_token
    from moeq.db.repository.runs import create_run
    from moeq.db.store import Store
    from moeq.jobs.settings import load_settings
    from moeq.jobs.submit import cancel_with_message

    monkeypatch.setenv("MOEQ_HOME", str(tmp_path / "home"))
    settings = load_settings()
    store = Store(settings.database_url)
    with store.session() as s:
        run = create_run(s, {"model": "tiny-mixtral"}, summary="W4A16", techniques="rtn", origin=CLI)
        run.status = "running"  # owned by this (live) process
        run_id = run.id
    status, said = cancel_with_message(settings, store, run_id)
    assert status == "running" and f"its moeq run process (pid {owner_token()[0]} on" in said
    assert "stops it after the current layer" in said
    status, said = cancel_with_message(settings, store, run_id)  # asked twice: still honest
    assert status == "running"
