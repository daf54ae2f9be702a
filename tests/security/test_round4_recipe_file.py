"""Round 4, hole 6: `--recipe FILE` (run, submit, sweep) is read through the safe open — non-blocking,
regular files only, at most MAX_RECIPE_BYTES — so `/dev/zero` is not read for gigabytes and a FIFO
does not hang the command; each is one line."""

from __future__ import annotations

import os

import pytest

from moeq.contract.limits import MAX_RECIPE_BYTES
from tests.security.conftest import moeq


@pytest.mark.parametrize("command", [["submit"], ["sweep", "--grid", "bits=W3A16,W4A16"]])
def test_a_device_or_a_fifo_is_refused_at_once(tmp_path, command):
    fifo = tmp_path / "recipe.json"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo)):
        out = moeq(*command, "--recipe", path, "--model", "m", env={"MOEQ_HOME": str(tmp_path / "home")}, timeout=30)
        assert out.returncode != 0, out
        assert out.stderr.strip() == f"moeq: error: recipe.<file>: cannot read {path}: {path} is not a regular file"


def test_a_recipe_file_over_the_limit_is_refused_by_its_size(tmp_path):
    big = tmp_path / "big.json"
    big.write_text('{"model": "m", "x": "' + "a" * MAX_RECIPE_BYTES + '"}')
    out = moeq("submit", "--recipe", str(big), env={"MOEQ_HOME": str(tmp_path / "home")})
    size = big.stat().st_size
    assert out.stderr.strip() == (f"moeq: error: recipe.<file>: cannot read {big}: "
                                  f"{big} is {size} bytes; at most {MAX_RECIPE_BYTES} are read"), out.stderr
