"""`moeq sweep` without workers: grid axes → recipes, the cost estimate from recorded runs, one-line
errors; `moeq submit --seeds` refuses bad seeds."""

from __future__ import annotations

import json
import statistics

import pytest

from moeq.app.cli import main
from moeq.app.sweep_grid import parse_axes, point_recipe
from moeq.contract.errors import MoeqError
from moeq.contract.grid import MAX_POINTS, grid_points, parse_seeds

SMALL = {"calibration": {"source": "random", "samples": 4, "seq_len": 32},
         "eval": {"source": "random", "tasks": [], "ppl_windows": 2, "seq_len": 32}}


def test_axes_and_points():
    axes = parse_axes(["bits=W3A16,W4A16", "techniques=gptq,rotation+gptq", "allocation.avg_bits=2.5,3"], "0,1")
    assert list(axes) == ["bits", "techniques", "allocation.avg_bits", "seed"]
    points = grid_points(axes)
    assert len(points) == 16 and points[0] == {"bits": "W3A16", "techniques": "gptq", "allocation.avg_bits": 2.5,
                                               "seed": 0}
    r = point_recipe({"model": "m", "techniques": [{"name": "rtn"}], "weights": {"group_size": 64}}, points[-1])
    assert r["weights"] == {"bits": 4, "group_size": 64} and r["seed"] == 1 and r["allocation"] == {"avg_bits": 3}
    assert [t["name"] for t in r["techniques"]] == ["rotation", "gptq"]  # the axis replaces the base's techniques


@pytest.mark.parametrize("call, message", [
    (lambda: parse_seeds("0,x"), "--seeds: expected comma-separated integers"),
    (lambda: parse_seeds("1,1"), "seeds must be distinct"),
    (lambda: parse_axes(["bits"], None), "expected NAME=V1,V2"),
    (lambda: parse_axes(["bits=W4A16", "bits=W3A16"], None), "given twice"),
    (lambda: parse_axes([], None), "at least one grid axis"),
    (lambda: grid_points({"a": list(range(MAX_POINTS)), "b": [0, 1]}), f"at most {MAX_POINTS}"),
])
def test_bad_grids_are_one_line_errors(call, message):
    with pytest.raises(MoeqError, match=message):
        call()


def test_dry_run_prints_the_grid_and_an_estimate_from_recorded_runs(moeq_home, tmp_path, monkeypatch, capsys):
    from moeq.db.repository.results import store_result
    from moeq.db.repository.runs import claim_run, create_run
    from moeq.db.store import Store

    url = f"sqlite:///{tmp_path / 'moeq.sqlite'}"
    monkeypatch.setenv("MOEQ_DATABASE_URL", url)
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps(SMALL))
    assert main(["sweep", "--model", "tiny-mixtral", "--recipe", str(recipe), "--grid", "bits=W4A16g16,W2A16g16",
                 "--techniques", "rtn", "--seeds", "0,1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "bits 2 × seed 2 = 4 runs" in out and "estimated cost: unknown" in out
    store = Store(url)
    for total in (10.0, 30.0, 50.0):  # recorded runs of this model and techniques: median 30 s per run
        with store.session() as s:
            rid = create_run(s, {"model": "tiny-mixtral"}, summary="x", techniques="rtn").id
            claim_run(s, rid, "h", "cpu")
            store_result(s, rid, {"model": "tiny-mixtral", "metrics": {}, "bits": {},
                                  "timings": {"load_s": total / 2, "quantize_s": total / 2}})
    store.dispose()
    assert main(["sweep", "--model", "tiny-mixtral", "--recipe", str(recipe), "--grid", "bits=W4A16g16,W2A16g16",
                 "--techniques", "rtn", "--seeds", "0,1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"estimated cost: {4 * statistics.median([10, 30, 50]) / 60:.1f} worker-minutes" in out


def test_bad_grid_point_is_refused_before_anything_is_queued(moeq_home, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOEQ_DATABASE_URL", f"sqlite:///{tmp_path / 'moeq.sqlite'}")
    rc = main(["sweep", "--model", "tiny-mixtral", "--grid", "bits=W4A16g16,W5A16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "grid point 2 of 2" in err[0] and "weights.bits" in err[0]
    assert main(["study", "list"]) == 0 and "(0 studies)" in capsys.readouterr().out
    assert main(["submit", "--model", "tiny-mixtral", "--bits", "W4A16g16", "--seeds", "0,0"]) != 0
    assert "seeds must be distinct" in capsys.readouterr().err


def test_cancel_a_whole_queued_study(moeq_home, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOEQ_DATABASE_URL", f"sqlite:///{tmp_path / 'moeq.sqlite'}")
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps(SMALL))
    assert main(["sweep", "--model", "tiny-mixtral", "--recipe", str(recipe), "--techniques", "rtn",
                 "--grid", "bits=W4A16g16,W2A16g16", "--seeds", "0,1", "--json"]) == 0
    sid = json.loads(capsys.readouterr().out)["study_id"]  # queued on the embedded broker; no worker runs it
    assert main(["study", "cancel", sid[:8]]) == 0
    assert "cancel requested for 4 run(s)" in capsys.readouterr().out
    assert main(["study", "show", sid[:8], "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["state"] == "cancelled" and d["counts"]["cancelled"] == 4 and d["progress"] == "4 of 4"
    assert main(["study", "rerun", sid[:8]]) == 0
    assert "4 failed or cancelled run(s) queued again" in capsys.readouterr().out
    assert main(["study", "show", "zzzz"]) != 0
    assert "no study with id 'zzzz'" in capsys.readouterr().err
