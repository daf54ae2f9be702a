"""Round 2, item 2: a MoQE recipe variant runs with the run's keys merged with its own, so its own
`calibration.source` (or evaluation keys) must be confined like the run's — at admission and in the
worker — and the answer must not tell an existing file from a missing one or a folder."""

from __future__ import annotations

import pytest

from moeq.contract.errors import RecipeError
from moeq.jobs.admission import admit
from moeq.jobs.local import make_context

W = {"weights": {"bits": 2, "group_size": 16}, "techniques": ["rtn"]}


def _moqe(variant: dict) -> dict:
    return {"model": "tiny-mixtral", "calibration": {"samples": 2, "seq_len": 32},
            "moqe": {"variants": [{**W, **variant}, W], "epochs": 1, "train_samples": 2, "eval_samples": 2}}


@pytest.mark.parametrize("section, key, value", [
    ("calibration", "source", "file:{p}"),
    ("eval", "source", "file:{p}"),
    ("eval", "tasks", ["file:{p}"]),
    ("eval", "lm_eval_include", "{p}"),
])
def test_variant_source_outside_the_roots_is_refused_without_revealing_it(team, tmp_path, section, key, value):
    settings, store = team
    outside = tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    secret = outside / "secret.txt"
    secret.write_text("operator's env file\n" * 100)
    msgs = []
    for path in (secret, outside / "missing.txt", outside / "folder"):  # a file, nothing, a folder
        v = [x.format(p=path) for x in value] if isinstance(value, list) else value.format(p=path)
        with pytest.raises(RecipeError) as err:
            admit(settings, store, _moqe({section: {key: v}}), ("p2",))
        msgs.append(str(err.value).replace(str(path), "P"))
    assert f"moqe.variants[0].{section}.{key}" in msgs[0] and "outside the allowed" in msgs[0]
    assert msgs[0] == msgs[1] == msgs[2]
    from moeq.quant_core.api import run

    v = [x.format(p=secret) for x in value] if isinstance(value, list) else value.format(p=secret)
    with pytest.raises(RecipeError, match=r"moqe.variants\[0\]\..*outside the allowed"):
        run(_moqe({section: {key: v}}), make_context(settings))  # the worker refuses it too


def test_variant_source_inside_the_roots_is_resolved_for_the_worker(team, tmp_path):
    from moeq.contract.sources import confine_recipe

    settings, store = team
    real = tmp_path / "data" / "corpus.txt"
    real.write_text("hello world " * 200)
    (tmp_path / "data" / "link.txt").symlink_to(real)
    recipe = admit(settings, store, _moqe({"calibration": {"source": f"file:{tmp_path}/data/../data/link.txt"}}),
                   ("p2",))
    confined = confine_recipe(recipe, data_roots=settings.data_roots, task_roots=settings.task_roots,
                              saved_roots=None)
    assert confined.moqe.variants[0]["calibration"] == {"source": f"file:{real}"}
    assert confined.moqe.variants[1] == W  # a variant without its own source keeps the run's


@pytest.mark.parametrize("spelled", ["{a}", "{a}/", "{a}/../artifacts", "{a}/."])
@pytest.mark.parametrize("who", [("p2",), None], ids=["team", "embedded"])
def test_the_artifacts_root_is_not_a_variant(team, spelled, who):
    """Third round, item 4: refused at admission in one line (it used to fail in the worker)."""
    settings, store = team
    recipe = _moqe({})
    recipe["moqe"]["variants"][0] = "path:" + spelled.format(a=settings.artifacts_dir)
    with pytest.raises(RecipeError) as err:
        admit(settings, store, recipe, who)
    text = str(err.value)
    assert text.startswith("recipe.moqe.variants[0]: the artifacts folder itself") and "\n" not in text, text
