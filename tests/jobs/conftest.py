"""Real Celery workers in subprocesses, on Redis (team mode) or the embedded SQLite broker."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from moeq.db.repository.runs import get_run
from moeq.db.store import Store
from moeq.jobs.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
TINY = {"model": "tiny-mixtral", "weights": {"bits": 4, "group_size": 16}, "techniques": ["rtn"],
        "eval": {"source": "random", "tasks": [], "ppl_windows": 2, "seq_len": 32}}
SLOW = {"model": "tiny-mixtral", "weights": {"bits": 4, "group_size": 16}, "techniques": ["gptq"],
        "calibration": {"source": "random", "samples": 96, "seq_len": 128},
        "eval": {"source": "random", "tasks": [], "ppl_windows": 48, "seq_len": 128}}


class Workers:
    """Start/stop worker processes sharing one environment."""

    def __init__(self, env: dict) -> None:
        self.env = env
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str) -> subprocess.Popen:
        log = open(Path(self.env["MOEQ_HOME"]) / f"{name}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "moeq.jobs.worker", "--loglevel=WARNING", "--name", name],
                                env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def _env(home: Path, db_url: str, broker: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOEQ_")}
    env.update(MOEQ_HOME=str(home), MOEQ_DATABASE_URL=db_url, MOEQ_HEARTBEAT_S="0.5", MOEQ_LEASE_S="4",
               MOEQ_MAX_ATTEMPTS="2", PYTHONPATH=str(ROOT), HF_HUB_DISABLE_PROGRESS_BARS="1",
               TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    if broker:
        env["MOEQ_BROKER_URL"] = broker
    return env


@pytest.fixture(params=["redis", "embedded"])
def cluster(request, tmp_path):
    """(settings, store, Workers) for team mode on Redis or embedded mode on SQLite (no Redis)."""
    home = tmp_path / "home"
    home.mkdir()
    db_url = f"sqlite:///{home / 'moeq.sqlite'}"
    broker = None
    if request.param == "redis":
        import redis

        n = random.randint(1, 15)
        redis.Redis(host="127.0.0.1", port=6379, db=n).flushdb()
        broker = f"redis://127.0.0.1:6379/{n}"
    env = _env(home, db_url, broker)
    settings = load_settings(env)
    store = Store(db_url)
    workers = Workers(env)
    yield settings, store, workers
    workers.stop_all()
    store.dispose()


def wait_for(store: Store, run_id: str, statuses: tuple[str, ...], timeout: float = 180.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with store.session() as s:
            status = get_run(s, run_id).status
        if status in statuses:
            return status
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not reach {statuses} within {timeout}s (last {status})")
