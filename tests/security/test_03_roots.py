"""Item 3: recipes read only under the operator's roots (resolved after symlinks), errors reveal
nothing about files outside them, and MoQE saved-model variants only from readable runs or roots."""

from __future__ import annotations

import os

import pytest

from moeq.db.repository.runs import create_run
from moeq.jobs.admission import admit
from moeq.jobs.local import make_context
from moeq.contract.errors import RecipeError

BASE = {"model": "tiny-mixtral", "weights": {"bits": 4, "group_size": 16}, "techniques": ["rtn"]}
VARIANT = {"techniques": ["rtn"], "weights": {"bits": 4, "group_size": 16}}  # a grid that divides tiny-mixtral


@pytest.mark.parametrize("key", ["calibration", "eval"])
def test_file_outside_data_roots_is_refused_without_revealing_it(team, key):
    settings, store = team
    msgs = []
    for path in ("/etc/passwd", "/etc/no-such-file-here"):
        with pytest.raises(RecipeError) as err:
            admit(settings, store, {**BASE, key: {"source": f"file:{path}"}})
        msgs.append(str(err.value).replace(path, "P"))
    assert "outside the allowed data roots" in msgs[0]
    assert msgs[0] == msgs[1]  # same answer whether the file exists or not
    from moeq.quant_core.api import run

    with pytest.raises(RecipeError, match="outside the allowed data roots"):  # the worker refuses it too
        run({**BASE, key: {"source": "file:/etc/passwd"}}, make_context(settings))


def test_symlink_inside_a_root_pointing_out_is_refused(team, tmp_path):
    settings, store = team
    link = tmp_path / "data" / "innocent.txt"
    os.symlink("/etc/passwd", link)
    with pytest.raises(RecipeError, match="outside the allowed data roots"):
        admit(settings, store, {**BASE, "eval": {"tasks": [f"file:{link}"]}})
    ok = tmp_path / "data" / "corpus.txt"
    ok.write_text("hello world " * 100)
    assert admit(settings, store, {**BASE, "calibration": {"source": f"file:{ok}"}}).calibration.source.startswith(
        "file:")


def test_team_mode_without_data_roots_refuses_every_file(tmp_path):
    from moeq.db.store import Store
    from moeq.jobs.settings import load_settings

    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    settings = load_settings({"MOEQ_HOME": str(tmp_path), "MOEQ_DATABASE_URL": url, "MOEQ_AUTH": "1"})
    (tmp_path / "c.txt").write_text("text")
    with pytest.raises(RecipeError, match="none configured"):
        admit(settings, Store(url), {**BASE, "calibration": {"source": f"file:{tmp_path / 'c.txt'}"}})


def _saved_run(settings, store, user, project):
    with store.session() as s:
        run = create_run(s, {"model": "tiny-mixtral"}, summary="x", techniques="rtn", user=user, project=project)
        rid = run.id
    saved = settings.artifacts_dir / rid
    saved.mkdir(parents=True)
    (saved / "moeq.json").write_text("{}")
    return rid, saved


def test_moqe_saved_variants_only_from_runs_the_user_may_read(team):
    settings, store = team
    rid, saved = _saved_run(settings, store, "alice", "p1")
    own = {**BASE, "moqe": {"variants": [f"path:{saved}", VARIANT]}}
    by_id = {**BASE, "moqe": {"variants": [f"run:{rid[:8]}", VARIANT]}}
    for recipe in (own, by_id):
        with pytest.raises(RecipeError, match="matches no run"):
            admit(settings, store, recipe, ("p2",))  # bob
        parsed = admit(settings, store, recipe, ("p1",))  # alice
        assert parsed.moqe.variants[0] == f"path:{saved.resolve()}"
    with pytest.raises(RecipeError, match="outside the allowed saved model roots"):
        admit(settings, store, {**BASE, "moqe": {"variants": ["path:/etc", VARIANT]}}, ("p1",))


def test_a_symlink_swapped_in_after_the_check_is_not_followed(tmp_path):
    from moeq.contract.sources import confine, read_text_file

    root = (tmp_path / "data").resolve()
    (root / "sub").mkdir(parents=True)
    target = root / "sub" / "c.txt"
    target.write_text("calibration text")
    checked = confine(str(target), (root,), "calibration.source", "data")
    assert read_text_file(str(checked), "calibration.source") == "calibration text"
    target.unlink()
    os.symlink("/etc/passwd", target)  # the file itself swapped for a link
    with pytest.raises(RecipeError):
        read_text_file(str(checked), "calibration.source")
    (root / "sub").rename(root / "old")
    os.symlink("/etc", root / "sub")  # a folder on the way swapped for a link
    with pytest.raises(RecipeError):
        read_text_file(str(root / "sub" / "passwd"), "calibration.source")
