"""`moeq run` end to end from the command line: JSON contract and one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from moeq.app.cli import main
from tests.contract import validate_result

PROGRESS_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[ *\d+%\] ")
SMALL = {"calibration": {"source": "random", "samples": 4, "seq_len": 32},
         "eval": {"source": "random", "tasks": [], "ppl_windows": 2, "seq_len": 32}}


@pytest.fixture()
def recipe_file(tmp_path):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(SMALL))
    return path


def test_run_json_validates_against_the_contract(moeq_home, recipe_file, capsys):
    rc = main(["run", "--model", "tiny-mixtral", "--recipe", str(recipe_file), "--bits", "W4A16g16",
               "--techniques", "gptq", "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    result = json.loads(out)
    validate_result(result)
    assert result["status"] == "succeeded"
    assert result["recipe"]["techniques"][0]["name"] == "gptq"
    assert result["bits"]["avg_weight_bits"] == 4.0
    calibrated = {row["layer"] for row in result["expert_stats"] if row["calib_tokens"] is not None}
    assert calibrated == {0, 1, 2} and len(result["expert_stats"]) == 3 * 8


@pytest.mark.parametrize("args, message", [
    (["--model", "/no/such/model"], "model path '/no/such/model' does not exist"),
    (["--model", "tiny-mixtral", "--bits", "W5A16"], "recipe.weights.bits: must be one of"),
    (["--model", "tiny-mixtral", "--bits", "W4A16g7"], "group size 7 does not divide hidden_size = 64"),
    (["--model", "tiny-mixtral", "--techniques", "magic"], "unknown technique 'magic'"),
])
def test_bad_input_exits_nonzero_with_one_line_error(moeq_home, recipe_file, capsys, args, message):
    rc = main(["run", "--recipe", str(recipe_file), *args])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not PROGRESS_LINE.match(line)]
    assert rc != 0
    assert len(err) == 1 and err[0].startswith("moeq: error:") and message in err[0]


def test_unknown_family_is_named(moeq_home, tmp_path, capsys):
    model_dir = tmp_path / "llama"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"model_type": "llama"}))
    rc = main(["run", "--model", str(model_dir), "--bits", "W4A16"])
    err = capsys.readouterr().err
    assert rc != 0 and "model_type 'llama' is not a supported MoE family" in err


def test_json_errors_are_a_failed_result(moeq_home, capsys):
    rc = main(["run", "--model", "/nope", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc != 0 and out["status"] == "failed" and out["error"]["type"] == "ModelError"


def test_cli_entry_point_runs_as_a_process(moeq_home):
    proc = subprocess.run([sys.executable, "-m", "moeq.app.cli", "zoo", "list", "--json"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = {row["name"] for row in json.loads(proc.stdout)}
    assert {"testbed-mixtral", "testbed-shared", "tiny-deepseek_v3"} <= names


MOQE = {**SMALL, "moqe": {"variants": [{"weights": {"bits": 2, "group_size": 16}, "techniques": ["rtn"]},
                                       {"weights": {"bits": 2, "group_size": 16}, "techniques": ["gptq"]},
                                       {"weights": {"bits": 4, "group_size": 16}, "techniques": ["rtn"]}],
                          "train_samples": 16, "eval_samples": 8, "epochs": 3}}


def test_a_moqe_run_is_a_run_like_any_other(moeq_home, tmp_path, capsys):
    path = tmp_path / "moqe.json"
    path.write_text(json.dumps(MOQE))
    assert main(["run", "--model", "tiny-mixtral", "--recipe", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    validate_result(result)
    q, ppl = result["moqe"], result["metrics"]["perplexity"]
    singles = [v["perplexity"] for v in q["variants"]]
    assert len(singles) == 3 and abs(sum(q["usage"]) - 1) < 1e-6
    assert q["oracle"]["perplexity"] <= min(singles) + 1e-4 and q["oracle"]["perplexity"] <= ppl <= max(singles) + 1e-4
    assert q["stored_weight_bits"] == 8.0
    assert main(["runs", "list", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["runs"]
    assert row["techniques"] == "moqe" and row["recipe_summary"] == (
        "MoQE[W2A16 g16 rtn router=fp | W2A16 g16 gptq router=fp | W4A16 g16 rtn router=fp]")


@pytest.mark.parametrize("model, variant, message", [
    ("tiny-jetmoe", {"weights": {"bits": 4, "group_size": 16}, "techniques": ["smooth", "rtn"]},
     "recipe.moqe.variants[1].techniques: family jetmoe cannot take smoothing: its mixture-of-attention experts"),
    ("tiny-jetmoe", {"weights": {"bits": 4, "group_size": 16}, "techniques": ["rtn"], "activations": {"bits": 8}},
     "recipe.moqe.variants[1].techniques: family jetmoe cannot take activation quantization"),
    # a variant without weights takes the recipe defaults (group 128), not the run's: as the worker builds it
    ("tiny-mixtral", {"techniques": ["rtn"]}, "recipe.moqe.variants[1].weights.group_size: group size 128 does not "
     "divide hidden_size = 64 of tiny-mixtral; group sizes that fit every width: 64, 32, 16, 8, channel"),
    # JetMoE's attention experts read kv_channels × num_key_value_heads = 32 wide inputs
    ("tiny-jetmoe", {"weights": {"bits": 4, "group_size": 64}, "techniques": ["rtn"]},
     "recipe.moqe.variants[1].weights.group_size: group size 64 does not divide intermediate_size = 32, "
     "kv_channels × num_key_value_heads (attention experts) = 32 of tiny-jetmoe"),
])
def test_each_moqe_variant_is_admitted_like_a_run(moeq_home, tmp_path, capsys, model, variant, message):
    """A variant the worker would refuse (its family cannot take a technique, its group size does not fit)
    is refused at admission, in one line naming the variant, before anything is stored or run."""
    recipe = {**MOQE, "moqe": {**MOQE["moqe"], "variants": [MOQE["moqe"]["variants"][2], variant]}}
    path = tmp_path / "moqe.json"
    path.write_text(json.dumps(recipe))
    assert main(["run", "--model", model, "--recipe", str(path)]) != 0
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not PROGRESS_LINE.match(line)]
    assert len(err) == 1 and message in err[0], err
    assert main(["runs", "list"]) == 0
    assert "(0 of 0)" in capsys.readouterr().out


def test_a_bad_moqe_variant_is_rejected_before_anything_runs(moeq_home, tmp_path, capsys):
    bad = {**MOQE, "moqe": {**MOQE["moqe"], "variants": [{"weights": {"bits": 5}}, {"techniques": ["gptq"]}]}}
    path = tmp_path / "moqe.json"
    path.write_text(json.dumps(bad))
    assert main(["run", "--model", "tiny-mixtral", "--recipe", str(path)]) != 0
    assert "recipe.moqe.variants[0].weights.bits: must be one of" in capsys.readouterr().err
    assert main(["runs", "list"]) == 0
    assert "(0 of 0)" in capsys.readouterr().out
