"""The lm-evaluation-harness adapter scores a task defined from local files exactly like moeq's own
multiple-choice scorer (same log-likelihoods, same accuracy)."""

from __future__ import annotations

import json

import pytest

from moeq.quant_core.evaluate.task_sources import load_task_file
from moeq.quant_core.evaluate.tasks import score_mc
from tests.conftest import load_tiny

pytest.importorskip("lm_eval")

ITEMS = [{"type": "mc", "context": f"{a}+{b}=", "choices": [str(a + b), str(a + b + 1), str(a * b)], "gold": 0}
         for a, b in [(1, 2), (3, 4), (2, 2), (5, 1), (7, 2), (4, 4), (6, 3), (2, 9)]]

TASK_YAML = """task: moeq_local_add
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{gold}}}}"
target_delimiter: ""
metric_list:
  - metric: acc
"""


def test_local_lm_eval_task_matches_moeq_scoring(tiny_zoo, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    from moeq.quant_core.evaluate.lm_eval_adapter import run_lm_eval

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    data = tmp_path / "items.jsonl"
    data.write_text("\n".join(json.dumps(i) for i in ITEMS))
    tasks_dir = tmp_path / "tasks"
    tasks_dir.mkdir()
    (tasks_dir / "moeq_local_add.yaml").write_text(TASK_YAML.format(data=data))
    model = load_tiny(tiny_zoo, "mixtral")
    tok = AutoTokenizer.from_pretrained(tiny_zoo / "tiny-mixtral")
    [harness] = run_lm_eval(model, tok, ["moeq_local_add"], "cpu", include_path=str(tasks_dir))
    own = score_mc(model, tok, load_task_file(data), "cpu")
    assert harness.name == "moeq_local_add" and harness.n == len(ITEMS)
    assert harness.acc == pytest.approx(own.acc)
