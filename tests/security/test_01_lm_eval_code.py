"""Item 1: a recipe must not make the worker import Python from a folder a user can write to
(lm-eval task YAML with `!function utils.fn` next to a utils.py)."""

from __future__ import annotations

import pytest

from moeq.jobs.local import make_context
from moeq.jobs.submit import create
from moeq.contract.errors import RecipeError

TASK_YAML = """task: evil
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: !function utils.doc_to_text
doc_to_choice: ["a", "b"]
doc_to_target: 0
metric_list:
  - metric: acc
"""


def _attack_folder(tmp_path):
    folder = tmp_path / "user-writable"
    folder.mkdir()
    marker = tmp_path / "PWNED"
    (folder / "utils.py").write_text(f"open({str(marker)!r}, 'w').write('code ran')\n"
                                     "def doc_to_text(doc):\n    return 'x'\n")
    (folder / "data.jsonl").write_text('{"q": 1}\n')
    (folder / "evil.yaml").write_text(TASK_YAML.format(data=folder / "data.jsonl"))
    recipe = {"model": "tiny-mixtral", "weights": {"bits": 4, "group_size": 16}, "techniques": ["rtn"],
              "eval": {"source": "random", "tasks": ["lm_eval:evil"], "lm_eval_include": str(folder),
                       "ppl_windows": 2, "seq_len": 32, "limit": 1}}
    return folder, marker, recipe


def test_lm_eval_include_outside_task_roots_is_refused_and_runs_no_code(team, tmp_path):
    settings, store = team
    folder, marker, recipe = _attack_folder(tmp_path)
    with pytest.raises(RecipeError, match="eval.lm_eval_include: .*outside the allowed task roots"):
        create(store, recipe, user="bob", project="p2", settings=settings, scope=("p2",))
    # the worker refuses it too (a run stored by an older version, or a forged queue message)
    from moeq.quant_core.api import run

    with pytest.raises(RecipeError, match="outside the allowed task roots"):
        run(recipe, make_context(settings))
    assert not marker.exists()


def test_operator_task_root_is_accepted(team, tmp_path):
    from moeq.jobs.admission import admit
    from moeq.jobs.settings import load_settings

    settings, store = team
    folder, marker, recipe = _attack_folder(tmp_path)
    allowed = load_settings({"MOEQ_HOME": str(settings.home), "MOEQ_DATABASE_URL": settings.database_url,
                             "MOEQ_AUTH": "1", "MOEQ_TASK_ROOTS": str(folder)})
    parsed = admit(allowed, store, recipe, ("p2",))
    assert parsed.eval.lm_eval_include == str(folder) and not marker.exists()
