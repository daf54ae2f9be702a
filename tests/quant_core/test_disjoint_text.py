"""Calibration, evaluation, balance reserve and MoQE router training never read the same tokens of a
source: the run records each one's source and token range, and a source too short for disjoint windows
gets a warning (fewer windows) or a one-line refusal (none fit) — never silent overlap."""

from __future__ import annotations

import json
import shutil

import pytest

from moeq.app.cli import main
from moeq.contract.errors import CalibrationError
from moeq.contract.recipe import moqe_variants, parse_recipe
from moeq.quant_core import streams
from moeq.quant_core.calibration.data import token_windows
from moeq.quant_core.text_ranges import range_warnings
from moeq.quant_core.zoo.corpus import text_stream

CAL = {"samples": 4, "seq_len": 32}
EV = {"tasks": [], "ppl_windows": 2, "seq_len": 32, "routing": False}


def _tok(tiny_zoo):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_zoo / "tiny-mixtral")


def _run(tmp_path, capsys, model: str, recipe: dict) -> tuple[int, dict | None, str]:
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps({"weights": {"bits": 4, "group_size": 16}, "techniques": ["gptq"], **recipe}))
    rc = main(["run", "-q", "--model", model, "--recipe", str(path), "--json"])
    out = capsys.readouterr()
    return rc, json.loads(out.out), out.err


def _disjoint(a: list[int], b: list[int]) -> bool:
    return a[1] <= b[0] or b[1] <= a[0]


def _text_file(path, n_chars: int):
    path.write_text(text_stream(7, n_chars, "calib"))
    return path


def test_same_file_for_calibration_and_evaluation_reads_disjoint_recorded_ranges(moeq_home, tiny_zoo, tmp_path, capsys):
    text = _text_file(tmp_path / "text.txt", 20_000)
    src = f"file:{text}"
    rc, result, err = _run(tmp_path, capsys, str(tiny_zoo / "tiny-mixtral"),
                           {"calibration": {**CAL, "source": src}, "eval": {**EV, "source": src}})
    assert rc == 0, err
    ranges = result["text_ranges"]
    ev, cal = ranges["evaluation"], ranges["calibration"]
    assert ev["source"] == cal["source"] == src
    assert ev["token_range"] == [0, 2 * 31] and cal["token_range"] == [2 * 31, 2 * 31 + 4 * 31]
    assert _disjoint(ev["token_range"], cal["token_range"])
    assert not [w for w in result["warnings"] if "text" in w and ("room" in w or "overlap" in w)]
    # the recorded ranges are the tokens the windows hold
    stream = token_windows(src, "calib", _tok(tiny_zoo), 6, 32, 0)[:, 1:].reshape(-1)
    assert stream.numel() == 6 * 31


def test_a_file_too_short_for_disjoint_windows_warns_or_refuses(moeq_home, tiny_zoo, tmp_path, capsys):
    tok = _tok(tiny_zoo)
    full = text_stream(7, 400, "calib")
    n_ids = len(tok(full, add_special_tokens=False)["input_ids"])
    assert n_ids >= 2 * 31 + 31  # room for the evaluation and one calibration window, not for four
    short = tmp_path / "short.txt"
    short.write_text(full[:2 * 31 + 40])  # the char tokenizer: one token per character
    src = f"file:{short}"
    rc, result, err = _run(tmp_path, capsys, str(tiny_zoo / "tiny-mixtral"),
                           {"calibration": {**CAL, "source": src}, "eval": {**EV, "source": src}})
    assert rc == 0, err
    cal = result["text_ranges"]["calibration"]
    assert cal["windows"] == 1 and cal["requested_windows"] == 4 and cal["token_range"][0] == 2 * 31
    assert any("calibration text" in w and "1 of the 4 windows" in w for w in result["warnings"])
    tiny = tmp_path / "tiny.txt"
    tiny.write_text(full[:2 * 31 + 5])  # the evaluation's windows and nothing for calibration
    src = f"file:{tiny}"
    rc, result, err = _run(tmp_path, capsys, str(tiny_zoo / "tiny-mixtral"),
                           {"calibration": {**CAL, "source": src}, "eval": {**EV, "source": src}})
    assert rc != 0 and result["status"] == "failed" and result["error"]["type"] == "CalibrationError"
    message = result["error"]["message"]
    assert "\n" not in message and "needs 31 after the 62 tokens" in message, message


def test_auto_on_a_model_folder_with_only_text_txt_reads_disjoint_ranges(moeq_home, tiny_zoo, tmp_path, capsys):
    model_dir = tmp_path / "text-mixtral"
    shutil.copytree(tiny_zoo / "tiny-mixtral", model_dir)
    _text_file(model_dir / "text.txt", 20_000)
    recipe = {"calibration": {**CAL, "balance": {"extra_samples": 3}}, "eval": EV}
    rc, result, err = _run(tmp_path, capsys, str(model_dir), recipe)
    assert rc == 0, err
    ranges = result["text_ranges"]
    src = f"file:{model_dir / 'text.txt'}"
    assert {r["source"] for r in ranges.values()} == {src}
    assert ranges["evaluation"]["token_range"] == [0, 62]
    assert ranges["calibration"]["token_range"] == [62, 62 + 4 * 31]
    assert ranges["balance reserve"]["token_range"] == [62 + 4 * 31, 62 + 7 * 31]
    pairs = [(a, b) for a in ranges.values() for b in ranges.values() if a is not b]
    assert all(_disjoint(a["token_range"], b["token_range"]) for a, b in pairs)


def test_moqe_router_windows_follow_evaluation_calibration_and_reserve_on_one_file(tiny_zoo, tmp_path):
    tok = _tok(tiny_zoo)
    src = f"file:{_text_file(tmp_path / 'text.txt', 40_000)}"
    recipe = parse_recipe({"model": "tiny-mixtral", "calibration": {**CAL, "source": src},
                           "eval": {**EV, "source": src},
                           "moqe": {"variants": [{"weights": {"bits": 2}},
                                                 {"weights": {"bits": 3}, "calibration": {
                                                     "samples": 6, "balance": {"extra_samples": 2}}}],
                                    "train_samples": 5, "eval_samples": 3}})
    variants = moqe_variants(recipe)
    _, ev = streams.evaluation_windows(variants[1].eval, tok, None)
    assert ev["text"]["token_range"] == [0, 3 * 31]  # a MoQE run evaluates eval_samples windows
    _, cal = streams.calibration_draw(variants[1], tok, None)
    _, res = streams.reserve_windows(variants[1], tok, 2, 32, None)
    train, info = streams.router_windows(recipe, variants, tok)
    assert cal.start == 3 * 31 and res.start == cal.end and res.end == cal.end + 2 * 31
    assert info["text"]["token_range"][0] >= res.end and train.shape[0] == 5
    ranges = {"evaluation": ev["text"], "calibration": cal.record(), "balance reserve": res.record(),
              "router training": info["text"]}
    assert range_warnings(ranges) == []
    overlapping = {**ranges, "router training": {**info["text"], "token_range": [cal.start, cal.end]}}
    assert any("overlap" in w for w in range_warnings(overlapping))


def test_corpus_streams_keep_evaluation_apart_and_reserve_after_calibration(tiny_zoo):
    tok = _tok(tiny_zoo)
    recipe = parse_recipe({"model": "tiny-mixtral", "calibration": {**CAL, "balance": {"extra_samples": 2}},
                           "eval": EV})
    calib, cal = streams.calibration_draw(recipe, tok, None)
    reserve, res = streams.reserve_windows(recipe, tok, 2, 32, None)
    assert (cal.split, cal.start) == ("calib", 0) and res.start == cal.end and res.split == "calib"
    stream = token_windows("auto", "calib", tok, 6, 32, recipe.seed)
    assert (stream[:4] == calib).all() and (stream[4:] == reserve).all()


def test_a_source_with_no_room_refuses_in_one_line(tiny_zoo, tmp_path):
    tok = _tok(tiny_zoo)
    short = tmp_path / "short.txt"
    short.write_text("abc " * 10)
    with pytest.raises(CalibrationError) as exc:
        token_windows(f"file:{short}", "calib", tok, 2, 32, 0, start=10)
    assert "\n" not in str(exc.value)
