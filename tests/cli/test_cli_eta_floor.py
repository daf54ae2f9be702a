"""The CLI's ETA (bar and stage lines) never promises less than the stages still ahead took on the last
finished run of the same model and techniques — the floor the web card already had."""

from __future__ import annotations

import json
import re

from sqlalchemy import select

from moeq.app.cli import main
from moeq.app.progress_view import LineProgress
from moeq.db.models import Run
from moeq.db.repository.eta import StageFloor
from moeq.db.store import Store
from moeq.jobs.settings import load_settings

SMALL = {"calibration": {"source": "random", "samples": 4, "seq_len": 32},
         "eval": {"source": "random", "tasks": [], "ppl_windows": 2, "seq_len": 32}}
ETA = re.compile(r"\[ *(\d+)%\] (.+?) — elapsed \S+, ETA (\S+)$")


def _seconds(text: str) -> int:
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    h, mi, s = (int(g or 0) for g in m.groups())
    return 3600 * h + 60 * mi + s


def test_stage_floor_counts_only_the_stages_ahead():
    floor = StageFloor({"load_s": 1.0, "fp_evaluate_s": 5.0, "calibrate_s": 2.0, "quantize_s": 10.0,
                        "evaluate_s": 40.0, "save_s": 7.0}, save_model=False)
    assert floor("load model tiny") == 5.0 + 2.0 + 10.0 + 40.0
    assert floor("quantize: layer 2/4") == 40.0
    assert floor("some sub-step without a stage name") == 40.0  # the phase seen last
    assert floor("evaluate: perplexity") is None  # nothing measured is ahead (save is not asked for)
    assert StageFloor(None, save_model=True)("load model") is None


def test_line_progress_applies_the_floor(caplog):
    caplog.set_level("INFO", logger="moeq.progress")
    view = LineProgress(floor=lambda stage: 3600.0)
    view("quantize: layer 1/2", 0.9)
    assert "ETA 1h00m" in caplog.text


def test_moeq_run_shows_an_eta_no_shorter_than_evaluation_took_last_time(moeq_home, tmp_path, capsys):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(SMALL))
    args = ["run", "--model", "tiny-mixtral", "--recipe", str(recipe), "--bits", "W4A16g16"]
    assert main([*args, "-q", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)["run_id"]
    store = Store(load_settings().database_url)
    with store.session() as s:  # the last run's evaluation took an hour (a slower machine, a bigger eval)
        run = s.scalar(select(Run).where(Run.id == first))
        run.result = {**run.result, "timings": {**run.result["timings"], "evaluate_s": 3600.0}}
    assert main([*args, "-v"]) == 0
    lines = [ETA.search(ln) for ln in capsys.readouterr().err.splitlines()]
    quantize = [m for m in lines if m and m.group(2).startswith("quantize")]
    assert quantize and all(_seconds(m.group(3)) >= 3600 for m in quantize)
    assert [m.group(3) for m in lines if m and m.group(2) == "done"] == ["0s"]
