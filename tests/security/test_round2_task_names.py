"""Round 2, item 1: `eval.tasks` "lm_eval:<x>" names a task of lm-eval's registry, never a file.
lm-eval loads any file path given as a task name and its `!function` imports Python next to it, so a
member who can put two files on the server (an upload, a shared /tmp) would run code as the worker."""

from __future__ import annotations

import pytest

from moeq.contract.errors import RecipeError
from moeq.jobs.local import make_context
from moeq.jobs.submit import create
from tests.security.test_01_lm_eval_code import TASK_YAML

BASE = {"model": "tiny-mixtral", "weights": {"bits": 4, "group_size": 16}, "techniques": ["rtn"]}


def _payload(folder, marker, name="evil.yaml"):
    folder.mkdir(exist_ok=True)
    (folder / "utils.py").write_text(f"open({str(marker)!r}, 'w').write('code ran')\n"
                                     "def doc_to_text(doc):\n    return 'x'\n")
    (folder / "data.jsonl").write_text('{"q": 1}\n')
    (folder / name).write_text(TASK_YAML.format(data=folder / "data.jsonl"))
    return folder / name


@pytest.mark.parametrize("spec", ["{yaml}", "arc_*", "~/evil.yaml", "../evil", "evil.yaml", "evil.yml"])
def test_task_path_or_glob_is_refused_at_admission_and_in_the_worker(team, tmp_path, spec):
    settings, store = team
    marker = tmp_path / "PWNED"
    yaml = _payload(tmp_path / "uploads", marker)
    recipe = {**BASE, "eval": {"source": "random", "tasks": [f"lm_eval:{spec.format(yaml=yaml)}"], "limit": 1,
                               "ppl_windows": 2, "seq_len": 32}}
    with pytest.raises(RecipeError, match=r"eval.tasks\[0\]: .*is not a task name of lm-eval's registry"):
        create(store, recipe, user="bob", project="p2", settings=settings, scope=("p2",))
    from moeq.quant_core.api import run

    with pytest.raises(RecipeError, match="is not a task name of lm-eval's registry"):
        run(recipe, make_context(settings))  # a stored or forged recipe that skipped admission
    assert not marker.exists()


def test_the_lm_eval_bridge_passes_only_registered_names(tmp_path, monkeypatch):
    """Last gate, in the worker's lm-eval call: a plain name that is a file in the worker's folder
    (lm-eval would load it as a task YAML) is not in the registry and never reaches lm-eval."""
    pytest.importorskip("lm_eval")
    from moeq.quant_core.evaluate.lm_eval_adapter import run_lm_eval

    marker = tmp_path / "PWNED"
    _payload(tmp_path / "cwd", marker, name="payload")  # a file named like a task, no suffix
    tasks = tmp_path / "operator-tasks"
    tasks.mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    with pytest.raises(RecipeError, match="'payload' is not a task, group or tag in the task folder"):
        run_lm_eval(None, None, ["payload"], "cpu", limit=1, include_path=str(tasks))
    with pytest.raises(RecipeError, match="is not a task name of lm-eval's registry"):
        run_lm_eval(None, None, [str(tmp_path / "cwd" / "payload")], "cpu", limit=1, include_path=str(tasks))
    assert not marker.exists()


def test_registry_names_still_pass(team):
    from moeq.jobs.admission import admit

    settings, store = team
    names = ["arc_easy", "mmlu_abstract_algebra", "tmmluplus_education_(profession_level)", "xnli_en"]
    parsed = admit(settings, store, {**BASE, "eval": {"tasks": [f"lm_eval:{n}" for n in names]}}, ("p2",))
    assert parsed.eval.tasks == tuple(f"lm_eval:{n}" for n in names)


def test_a_task_listed_twice_is_refused(team):
    from moeq.jobs.admission import admit

    settings, store = team
    with pytest.raises(RecipeError, match="eval.tasks: a task is listed twice"):
        admit(settings, store, {**BASE, "eval": {"tasks": ["lm_eval:arc_easy"] * 500}}, ("p2",))
