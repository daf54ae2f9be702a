"""Issue 25, third round, item 5: whichever command meets a new MOEQ_HOME first — `runs list`, a
run, `serve` — the home is created 0700 and the SQLite database 0600 (one function creates both)."""

from __future__ import annotations

import os

from moeq.db.engine import private_sqlite_file
from moeq.jobs.settings import load_settings
from tests.security.conftest import free_port, moeq


def _modes(home) -> tuple[int, int]:
    return home.stat().st_mode & 0o777, (home / "moeq.sqlite").stat().st_mode & 0o777


def test_runs_list_on_a_new_home_keeps_it_private(tmp_path):
    home = tmp_path / "fresh" / "home"
    old = os.umask(0o022)  # the usual umask: what the child inherits
    try:
        out = moeq("runs", "list", env={"MOEQ_HOME": str(home)})
    finally:
        os.umask(old)
    assert out.returncode == 0, out.stderr
    assert _modes(home) == (0o700, 0o600)


def test_serve_on_a_new_home_keeps_it_private(tmp_path):
    from moeq.app.server import serve

    home = tmp_path / "home"
    demo, cleanup = serve(load_settings({"MOEQ_HOME": str(home)}), port=free_port(), worker=False, block=False,
                          announce=lambda line: None)
    cleanup()
    assert _modes(home) == (0o700, 0o600)


def test_an_existing_database_keeps_its_mode(tmp_path):
    db = tmp_path / "team.sqlite"
    db.write_bytes(b"")
    db.chmod(0o640)  # the operator's choice
    private_sqlite_file(db)
    assert db.stat().st_mode & 0o777 == 0o640
