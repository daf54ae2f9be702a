"""What a person sees on the command line: a progress bar on a terminal, stage lines without one,
summaries, quiet ends for closed pipes and missing terminals, global -v/-q anywhere."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from moeq.app.cli import main, split_global_flags

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"calibration": {"source": "random", "samples": 4, "seq_len": 32},
         "eval": {"source": "random", "tasks": [], "ppl_windows": 2, "seq_len": 32}}
STAGE_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[ *\d+%\] .+ — elapsed \S+, ETA \S+$")


def _env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOEQ_")}
    env.update(MOEQ_HOME=str(home), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", COLUMNS="120")
    return env


@pytest.fixture()
def recipe_file(tmp_path):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(SMALL))
    return path


@pytest.fixture()
def one_run(moeq_home, recipe_file, capsys):
    assert main(["run", "-q", "--model", "tiny-mixtral", "--recipe", str(recipe_file), "--bits", "W4A16g16",
                 "--json"]) == 0
    return json.loads(capsys.readouterr().out)["run_id"]


def test_global_flags_are_taken_from_anywhere():
    assert split_global_flags(["runs", "show", "-v", "abc", "--quiet"]) == (["runs", "show", "abc"], {"verbose", "quiet"})
    assert split_global_flags(["-v", "run", "--", "-q"]) == (["run", "--", "-q"], {"verbose"})


def test_without_a_terminal_run_prints_timestamped_stage_lines(moeq_home, recipe_file, capsys):
    assert main(["run", "--model", "tiny-mixtral", "--recipe", str(recipe_file), "--bits", "W4A16g16", "-v"]) == 0
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if STAGE_LINE.match(ln)]
    stages = [re.sub(r"^.*\] ", "", ln).split(" — ")[0] for ln in lines]
    assert any(s.startswith("load model") for s in stages) and any(s.startswith("quantize") for s in stages)
    assert any(s.startswith("evaluate") for s in stages) and stages[-1] == "done"
    percents = [int(re.search(r"\[ *(\d+)%\]", ln).group(1)) for ln in lines]
    assert percents == sorted(percents) and percents[-1] == 100
    assert captured.out.startswith("run ")  # the summary


def test_quiet_prints_no_progress(moeq_home, recipe_file, capsys):
    assert main(["run", "--model", "tiny-mixtral", "--recipe", str(recipe_file), "--bits", "W4A16g16", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_on_a_terminal_run_draws_a_bar_with_elapsed_time_and_eta(tmp_path, recipe_file):
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "moeq.app.cli", "run", "--model", "tiny-mixtral", "--recipe",
                             str(recipe_file), "--bits", "W4A16g16"], cwd=ROOT, env=_env(tmp_path / "home"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + 240
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    out, _ = proc.communicate(timeout=60)
    os.close(master)
    tty = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, tty
    frames = [f for f in re.split(r"[\r\n]", tty) if "%|" in f]
    assert frames, tty
    assert all("elapsed" in f and "ETA" in f for f in frames)
    assert re.search(r"100%\|█+\| elapsed \d+s, ETA 0s", tty), frames[-3:]
    assert re.search(r"ETA \d+(m\d\d)?s", tty)  # an actual estimate was shown, not only '?'
    assert out.decode().startswith("run ")


def test_runs_show_prints_a_summary_and_json_on_request(one_run, capsys):
    assert main(["runs", "show", one_run[:8]]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"run {one_run}  succeeded") and "KL(FP||Q)" in text and "avg bits over all quantized weights" in text
    assert "time " in text and len(text.splitlines()) < 20
    assert main(["runs", "show", one_run[:8], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == one_run


def test_runs_compare_takes_two_or_more_runs(one_run, recipe_file, capsys):
    assert main(["run", "-q", "--model", "tiny-mixtral", "--recipe", str(recipe_file), "--bits", "W2A16g16",
                 "--json"]) == 0
    other = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["runs", "compare", one_run[:8], other[:8]]) == 0
    text = capsys.readouterr().out
    assert one_run[:8] in text and other[:8] in text and "KL(FP||Q)" in text and "avg weight bits" in text
    assert main(["runs", "compare", one_run[:8]]) == 2
    assert "at least two run ids" in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly(one_run, moeq_home):
    """`moeq runs show ID | head -1`: the reader is gone before we write; exit 0, no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "moeq.app.cli", "runs", "show", one_run[:8], "--json"], cwd=ROOT,
                            env=_env(moeq_home), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `head -1` after its line: every write now fails with EPIPE
    err = proc.stderr.read().decode()
    assert proc.wait(120) == 0 and "Traceback" not in err and "BrokenPipe" not in err, err
    shell = subprocess.run(f"{sys.executable} -m moeq.app.cli runs show {one_run[:8]} | head -1", shell=True, cwd=ROOT,
                           env=_env(moeq_home), capture_output=True, text=True, timeout=120)
    assert shell.stdout.startswith(f"run {one_run}") and len(shell.stdout.splitlines()) == 1
    assert "Traceback" not in shell.stderr


def test_users_add_without_a_terminal_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "moeq.app.cli", "users", "add", "x", "--project", "p"], cwd=ROOT,
                          env=_env(tmp_path / "home"), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120, start_new_session=True)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("moeq: error:") and "--password-stdin" in lines[0]


def test_help_cites_no_missing_design_document():
    for cmd in (["--help"], ["run", "--help"], ["submit", "--help"], ["runs", "show", "--help"]):
        proc = subprocess.run([sys.executable, "-m", "moeq.app.cli", *cmd], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0 and "DESIGN" not in proc.stdout, proc.stdout


def test_cancelling_a_finished_run_says_it_already_finished(one_run, capsys):
    assert main(["runs", "cancel", one_run[:8]]) == 0
    assert "already finished (succeeded)" in capsys.readouterr().out
