"""A study through real workers on Redis: `moeq sweep` of 2 bits × 2 techniques × 2 seeds queues 8 runs as
one Celery group; SIGKILL of one worker mid-study loses no run (with one attempt allowed, the lost run
fails with its reason), the study finishes, `moeq study show` prints the grid with mean ± sd, and
`moeq study rerun` queues only the failed run again."""

from __future__ import annotations

import json
import random
import time

import pytest

from moeq.app.cli import main
from moeq.db.repository.runs import TERMINAL
from moeq.db.repository.studies import get_study, study_runs
from moeq.db.store import Store
from moeq.jobs.settings import load_settings
from tests.jobs.conftest import Workers, _env

pytestmark = pytest.mark.services

RECIPE = {"calibration": {"source": "random", "samples": 64, "seq_len": 128},
          "eval": {"source": "random", "tasks": [], "ppl_windows": 24, "seq_len": 128}}


@pytest.fixture()
def team(tmp_path, monkeypatch):
    import redis

    home = tmp_path / "home"
    home.mkdir()
    n = random.randint(1, 15)
    redis.Redis(host="127.0.0.1", port=6379, db=n).flushdb()
    env = {**_env(home, f"sqlite:///{home / 'moeq.sqlite'}", f"redis://127.0.0.1:6379/{n}"), "MOEQ_MAX_ATTEMPTS": "1"}
    for k, v in env.items():
        if k.startswith("MOEQ_"):
            monkeypatch.setenv(k, v)
    store = Store(env["MOEQ_DATABASE_URL"])
    workers = Workers(env)
    yield load_settings(env), store, workers, tmp_path
    workers.stop_all()
    store.dispose()


def _runs(store, sid):
    with store.session() as s:
        return [(r.id, r.status, r.worker_host or "", r.error_message, r.finished_at) for r in study_runs(s, sid)]


def _wait(store, sid, done, timeout=480.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = _runs(store, sid)
        if done(runs):
            return runs
        time.sleep(0.5)
    raise AssertionError(f"study {sid} did not get there within {timeout}s: {[r[1] for r in runs]}")


def test_sweep_on_two_workers_survives_a_killed_worker_and_reruns_only_what_failed(team, capsys):
    _sweep_kill_rerun(team, capsys, "tiny-mixtral", RECIPE, "bits=W4A16g16,W2A16g16", 480.0)


@pytest.mark.slow
def test_sweep_on_the_testbed(team, capsys):
    """The acceptance grid: 2 bits × 2 techniques × 2 seeds on testbed-mixtral (small evaluation)."""
    recipe = {"weights": {"group_size": 64}, "calibration": {"samples": 32, "seq_len": 256},
              "eval": {"tasks": ["testbed"], "limit": 20, "ppl_windows": 8, "seq_len": 256, "kl_tokens": 2048}}
    _sweep_kill_rerun(team, capsys, "testbed-mixtral", recipe, "bits=W4A16,W2A16", 3000.0)


def _sweep_kill_rerun(team, capsys, model: str, recipe_dict: dict, bits_axis: str, timeout: float) -> None:
    settings, store, workers, tmp = team
    recipe = tmp / "recipe.json"
    recipe.write_text(json.dumps(recipe_dict))
    victim = workers.start("victim")
    workers.start("w2")
    assert main(["sweep", "--model", model, "--recipe", str(recipe), "--grid", bits_axis,
                 "--grid", "techniques=rtn,gptq", "--seeds", "0,1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    sid = out["study_id"]
    assert len(out["run_ids"]) == 8
    with store.session() as s:
        assert get_study(s, sid).celery_group_id
    _wait(store, sid, lambda runs: any(st == "running" and host.startswith("victim") for _, st, host, _, _ in runs))
    time.sleep(1.0)
    workers.kill(victim)
    runs = _wait(store, sid, lambda runs: all(st in TERMINAL for _, st, *_ in runs), timeout)
    failed = [r for r in runs if r[1] != "succeeded"]
    assert len(runs) == 8 and 1 <= len(failed) <= 2  # what the victim held (and maybe its prefetched next run)
    assert all(st == "failed" and "lost" in (msg or "") for _, st, _, msg, _ in failed), failed

    assert main(["study", "show", sid[:8]]) == 0
    shown = capsys.readouterr().out
    assert f"study {sid}  finished  8 of 8 finished" in shown
    assert f"{bits_axis.split(',')[0]} techniques=rtn" in shown and "±" in shown and "failed runs" in shown
    assert main(["study", "list"]) == 0 and sid[:8] in capsys.readouterr().out

    kept = {rid: fin for rid, st, _, _, fin in runs if st == "succeeded"}
    assert main(["study", "rerun", sid[:8]]) == 0
    assert f"{len(failed)} failed or cancelled run(s) queued again" in capsys.readouterr().out
    runs = _wait(store, sid, lambda runs: all(st in TERMINAL for _, st, *_ in runs), timeout)
    assert [st for _, st, *_ in runs] == ["succeeded"] * 8
    assert {rid: fin for rid, _, _, _, fin in runs if rid in kept} == kept  # succeeded runs did not run again
    assert main(["study", "show", sid[:8], "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["state"] == "finished" and len(d["grid"]) == 4 and all(r["kl"]["n"] == 2 for r in d["grid"])
