"""Metrics on text the model cannot read are flagged: a model whose own word-level tokenizer does not
cover the testbed corpus gets `warnings` in its result and on the CLI; `auto` then prefers the text
the model brings along (heldout.txt / calibration.txt in its directory)."""

from __future__ import annotations

import json
import shutil

import pytest

from moeq.app.cli import main
from moeq.quant_core.evaluate.text_check import text_warnings

WORDS = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "to", "red", "big", "and", "home", "fast"]


@pytest.fixture()
def word_model(tmp_path):
    """tiny-mixtral's weights with a word-level tokenizer of 14 words (everything else is <unk>)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from moeq.quant_core.zoo.build import ensure_built
    from moeq.quant_core.zoo.tokenizer import SPECIALS

    src = ensure_built("tiny-mixtral", tmp_path / "zoo")
    model_dir = tmp_path / "word-mixtral"
    shutil.copytree(src, model_dir)
    for f in model_dir.glob("tokenizer*"):
        f.unlink()
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate([*SPECIALS, *WORDS])}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                            unk_token="<unk>").save_pretrained(model_dir)
    return model_dir


def _run(model_dir, tmp_path, capsys) -> tuple[dict, str]:
    recipe = {"weights": {"bits": 4, "group_size": 16}, "techniques": ["gptq"],
              "calibration": {"samples": 4, "seq_len": 32},
              "eval": {"tasks": [], "ppl_windows": 2, "seq_len": 32}}
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    assert main(["run", "-q", "--model", str(model_dir), "--recipe", str(path), "--json"]) == 0
    out = capsys.readouterr()
    return json.loads(out.out), out.err


def test_unreadable_text_warns_in_the_result_and_on_the_cli(moeq_home, word_model, tmp_path, capsys):
    result, err = _run(word_model, tmp_path, capsys)
    check = result["text_check"]
    assert check["evaluation"]["unknown_share"] > 0.5 and check["calibration"]["unknown_share"] > 0.5
    assert any("of the evaluation text (auto) is unknown" in w for w in result["warnings"])
    assert any("of the calibration text (auto) is unknown" in w for w in result["warnings"])
    assert "moeq: warning:" in err and "unknown or byte-fallback tokens" in err


def test_auto_prefers_the_models_own_text(moeq_home, word_model, tmp_path, capsys):
    text = " ".join(WORDS[i % len(WORDS)] for i in range(4000))
    (word_model / "heldout.txt").write_text(text)
    (word_model / "calibration.txt").write_text(text)
    result, _ = _run(word_model, tmp_path, capsys)
    check = result["text_check"]
    assert check["evaluation"]["source"] == f"file:{word_model / 'heldout.txt'}"
    assert check["evaluation"]["unknown_share"] == 0.0 and check["calibration"]["unknown_share"] == 0.0
    assert not any("unknown" in w for w in result["warnings"])


def test_near_uniform_perplexity_is_flagged():
    ev = {"source": "auto", "unknown_share": 0.0}
    assert text_warnings(None, ev, 6.3e8, 32000) and not text_warnings(None, ev, 12.0, 32000)
    assert not text_warnings(None, {"source": "random", "unknown_share": None}, 99.0, 100)
