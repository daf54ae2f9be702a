"""`moeq submit` queues on the configured broker (Redis, or the embedded SQLite one) for a real
`moeq worker`; `--wait` follows the run to the end; `moeq runs show` finds it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from moeq.db.repository.runs import get_run
from tests.jobs.conftest import ROOT, TINY

pytestmark = pytest.mark.services


def _moeq(env: dict, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "moeq.app.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_submit_wait_runs_on_a_worker_and_runs_show_finds_it(cluster, tmp_path):
    settings, store, workers = cluster
    recipe = tmp_path / "tiny.json"
    recipe.write_text(json.dumps({k: v for k, v in TINY.items() if k != "model"}))
    workers.start("w1")
    proc = _moeq(workers.env, "submit", "--model", "tiny-mixtral", "--recipe", str(recipe), "--wait")
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.splitlines()[0].strip()
    assert len(run_id) == 32 and f"run {run_id}  succeeded" in proc.stdout
    assert "elapsed" in proc.stderr  # stage lines while following (no terminal here)
    with store.session() as s:
        assert get_run(s, run_id).status == "succeeded"
    shown = _moeq(workers.env, "runs", "show", run_id[:8])
    assert shown.returncode == 0 and shown.stdout.startswith(f"run {run_id}  succeeded")


def test_submit_without_wait_prints_the_id_and_a_bad_recipe_queues_nothing(cluster, tmp_path):
    settings, store, workers = cluster
    proc = _moeq(workers.env, "submit", "--model", "tiny-mixtral", "--bits", "W5A16")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "weights.bits" in proc.stderr
    missing = (settings.model_roots or (tmp_path,))[0] / "no-such-model"  # inside the roots (team mode confines paths to them)
    proc = _moeq(workers.env, "submit", "--model", str(missing))
    assert proc.returncode == 2 and "does not exist" in proc.stderr and proc.stderr.count("\n") == 1
    proc = _moeq(workers.env, "submit", "--model", "/no/such/model")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    proc = _moeq(workers.env, "submit", "--model", "tiny-mixtral", "--bits", "W4A16g16")
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip()
    with store.session() as s:
        assert get_run(s, run_id).status == "queued"
    cancelled = _moeq(workers.env, "runs", "cancel", run_id[:8])
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    again = _moeq(workers.env, "runs", "cancel", run_id[:8])
    assert "already finished (cancelled)" in again.stdout
