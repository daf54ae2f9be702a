"""Item 7 (+ issue 18 item 4): `moeq serve` supervises its worker — SIGKILL it and runs still
complete — stops it on SIGTERM, and refuses a busy port in one line before starting anything."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from tests.security.conftest import ROOT, alive, children_of, free_port, moeq, subprocess_env, wait_until


def _worker_pids(parent: int) -> list[int]:
    out = []
    for pid in children_of(parent):
        try:
            if b"moeq.jobs.worker" in open(f"/proc/{pid}/cmdline", "rb").read() and alive(pid):
                out.append(pid)
        except OSError:
            continue
    return out


def test_sigkilled_embedded_worker_comes_back_and_runs_complete(tmp_path, monkeypatch):
    from moeq.app.server import serve
    from moeq.db.repository.runs import get_run
    from moeq.db.store import Store
    from moeq.jobs.settings import load_settings
    from moeq.jobs.submit import submit
    from tests.jobs.conftest import SLOW, TINY, wait_for

    mid = {**SLOW, "calibration": {**SLOW["calibration"], "samples": 64}, "eval": {**SLOW["eval"], "ppl_windows": 24}}

    env = {"MOEQ_HOME": str(tmp_path / "home"), "MOEQ_HEARTBEAT_S": "0.5", "MOEQ_LEASE_S": "4",
           "MOEQ_MAX_ATTEMPTS": "3", "OMP_NUM_THREADS": "1"}
    for var in ("MOEQ_BROKER_URL", "MOEQ_DATABASE_URL", "MOEQ_AUTH"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    settings = load_settings()
    demo, cleanup = serve(settings, port=free_port(), block=False)
    store = Store(settings.database_url)
    try:
        first = wait_until(lambda: _worker_pids(os.getpid()), 30, "the local worker")[0]
        os.kill(first, signal.SIGKILL)  # idle worker killed
        second = wait_until(lambda: [p for p in _worker_pids(os.getpid()) if p != first], 30, "a restart")[0]
        rid = submit(settings, store, mid)
        wait_for(store, rid, ("running",), timeout=120)
        os.kill(second, signal.SIGKILL)  # killed mid-run: requeued by the reaper, picked up again
        assert wait_for(store, rid, ("succeeded", "failed"), timeout=240) == "succeeded"
        with store.session() as s:
            assert get_run(s, rid).attempts == 2
        rid2 = submit(settings, store, TINY)
        assert wait_for(store, rid2, ("succeeded", "failed"), timeout=120) == "succeeded"
    finally:
        cleanup()
        store.dispose()
    assert not _worker_pids(os.getpid())


def test_busy_port_is_one_line_and_nonzero_before_anything_starts(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        t0 = time.monotonic()
        out = moeq("serve", "--port", str(port), env={"MOEQ_HOME": str(tmp_path / "home")}, timeout=60)
    assert out.returncode != 0
    assert "already in use" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "home" / "worker.log").exists()  # no worker was started


def test_sigterm_stops_server_and_worker_together(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moeq.app.cli", "serve", "--port", str(port)], cwd=ROOT,
                            env=subprocess_env({"MOEQ_HOME": str(tmp_path / "home")}),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        worker = wait_until(lambda: _worker_pids(proc.pid), 90, "the local worker")[0]
        wait_until(lambda: _port_open(port), 90, "the web server")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) in (0, 130)  # handled (not killed by the signal: -15)
        wait_until(lambda: not alive(worker), 20, "the worker to stop with the server")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_worker_never_outlives_a_sigkilled_server(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moeq.app.cli", "serve", "--port", str(port)], cwd=ROOT,
                            env=subprocess_env({"MOEQ_HOME": str(tmp_path / "home")}),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = wait_until(lambda: _worker_pids(proc.pid), 90, "the local worker")[0]
    proc.kill()
    proc.wait(10)
    try:
        wait_until(lambda: not alive(worker), 30, "the orphaned worker to exit")
    finally:
        if alive(worker):
            os.kill(worker, signal.SIGKILL)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
