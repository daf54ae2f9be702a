"""Item 5: `moeq run --save` and `moeq export` never delete or overwrite existing data; what they
write follows the user's umask; no temporary folder is left behind."""

from __future__ import annotations

import os
import stat

import pytest

from moeq.contract.errors import ArtifactError
from moeq.quant_core.io.atomic import write_dir_atomically


def test_run_save_onto_a_non_empty_folder_is_refused_before_any_work(tmp_path, moeq_cli):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "thesis.tex").write_text("years of work")
    env = {"MOEQ_HOME": str(tmp_path / "home")}
    code, _, err = moeq_cli("run", "--model", "tiny-mixtral", "--bits", "W4A16g16", "--save", str(target), env=env)
    assert code != 0
    assert "not empty" in err and len(err.strip().splitlines()) == 1
    assert (target / "thesis.tex").read_text() == "years of work"
    assert not (tmp_path / "home" / "zoo" / "tiny-mixtral").exists()  # refused before building anything


def test_export_onto_a_non_empty_folder_is_refused(tmp_path, moeq_cli):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    code, _, err = moeq_cli("export", str(tmp_path / "nothing-saved"), str(target), "--format", "hf",
                            env={"MOEQ_HOME": str(tmp_path / "home")})
    assert code != 0 and "not empty" in err
    assert (target / "keep.txt").read_text() == "mine"


def test_atomic_write_respects_umask_and_cleans_up(tmp_path):
    old = os.umask(0o022)
    try:
        def fill(tmp):
            (tmp / "a.bin").write_bytes(b"x")

        out = write_dir_atomically(tmp_path / "new", fill)
        assert stat.S_IMODE(out.stat().st_mode) == 0o755
        assert stat.S_IMODE((out / "a.bin").stat().st_mode) == 0o644

        def broken(tmp):
            (tmp / "half").write_bytes(b"y")
            raise OSError("disk full")

        with pytest.raises(OSError):
            write_dir_atomically(tmp_path / "other", broken)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["new"]  # no temp folder, no target
        with pytest.raises(ArtifactError, match="not empty"):
            write_dir_atomically(tmp_path / "new", fill)
    finally:
        os.umask(old)
