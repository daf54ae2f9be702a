"""The generated corpus and the trained testbeds: determinism, splits, tasks, shipped weights."""

from __future__ import annotations

import json
import time

import pytest
import torch

from moeq.quant_core.evaluate.task_types import GenItem, MCItem
from moeq.quant_core.evaluate.testbed_tasks import eval_tasks
from moeq.quant_core.zoo.corpus import DOMAINS, MIXTURE, documents, text_stream
from moeq.quant_core.zoo.testbed import MANIFEST, TESTBEDS, WEIGHTS_DIR, install_testbed, train_testbed
from moeq.quant_core.zoo.tokenizer import CHARS


def test_corpus_is_deterministic_and_splits_differ():
    assert documents(0, 50, "train") == documents(0, 50, "train")
    assert documents(0, 50, "train") != documents(0, 50, "heldout")
    assert documents(0, 50, "calib") != documents(1, 50, "calib")
    text = text_stream(3, 20_000, "heldout")
    assert len(text) >= 20_000 and set(text) <= set(CHARS)


def test_mixture_is_imbalanced_with_rare_domains():
    counts = {d: 0 for d in DOMAINS}
    for doc in documents(0, 4000, "train"):
        counts[doc.split()[0]] += 1
    assert abs(sum(MIXTURE.values()) - 1) < 1e-9
    assert min(counts.values()) / 4000 < 0.05 and max(counts.values()) / 4000 > 0.2


def test_eval_tasks_are_well_formed_with_exact_answers():
    tasks = eval_tasks(0, 30)
    assert {t.domain for t in tasks} == set(DOMAINS)
    for task in tasks:
        assert len(task.items) == 30
        for item in task.items:
            if isinstance(item, MCItem):
                assert 0 <= item.gold < len(item.choices) and len(set(item.choices)) == len(item.choices)
            else:
                assert isinstance(item, GenItem) and item.answer and "\n" not in item.answer
    assert eval_tasks(0, 30) == tasks


@pytest.mark.parametrize("name", list(TESTBEDS))
def test_shipped_testbed_installs_and_loads_without_moeq(name, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    manifest = json.loads((WEIGHTS_DIR / name / MANIFEST).read_text())
    assert {"model.safetensors", "config.json", "initial_router.safetensors"} <= set(manifest)
    path = install_testbed(name, tmp_path)
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert model.dtype == torch.float32 and sum(p.numel() for p in model.parameters()) < 3_000_000
    ids = tok("add 2+3=", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()


def test_corrupted_shipped_weights_are_refused(tmp_path):
    import shutil

    from moeq.contract.errors import ModelError
    from moeq.quant_core.zoo import testbed as tb

    fake_root = tmp_path / "weights"
    shutil.copytree(WEIGHTS_DIR / "testbed-mixtral", fake_root / "testbed-mixtral")
    (fake_root / "testbed-mixtral" / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="does not match its manifest"):
        tb._verify(fake_root / "testbed-mixtral")


def test_short_training_is_deterministic_for_a_seed(tmp_path):
    from safetensors.torch import load_file

    a = train_testbed("testbed-mixtral", tmp_path / "a", seed=3, steps=3)
    b = train_testbed("testbed-mixtral", tmp_path / "b", seed=3, steps=3)
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (a / "initial_router.safetensors").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TESTBEDS))
def test_full_retrain_reaches_the_shipped_quality_in_ten_minutes(name, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from moeq.quant_core.evaluate.tasks import score_tasks

    t = time.perf_counter()
    path = train_testbed(name, tmp_path / name)
    minutes = (time.perf_counter() - t) / 60
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    model.set_experts_implementation("eager")
    scores = score_tasks(model, AutoTokenizer.from_pretrained(path), eval_tasks(0, 50), "cpu")
    above = [s for s in scores if s.acc > s.chance + 0.2]
    assert minutes <= 10 and len(above) >= len(scores) - 2
