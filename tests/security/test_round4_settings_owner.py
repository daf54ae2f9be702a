"""Round 4, hole 2: another local account planted /tmp/moeq.toml pointing `home` at a folder it owns,
and the owner's `moeq serve` started in /tmp used that folder's 0666 database.

Now no settings file is read from the current folder ($MOEQ_CONFIG, else $MOEQ_HOME/moeq.toml), a
settings file is read only if it and its folder are yours (or root's) and writable by nobody else,
and `serve`, `worker` and `run` refuse an existing home another user owns or others may write — each
with one line. "Another user" is played by `nobody` (chown)."""

from __future__ import annotations

import os
import shutil

import pytest

from moeq.jobs.private_paths import UnsafePath
from moeq.jobs.settings import load_settings
from tests.security.conftest import moeq

NOBODY = 65534


def _as_nobody(*paths) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to hand a file to another account")
    for p in paths:
        os.chown(p, NOBODY, NOBODY)


def test_a_moeq_toml_in_the_current_folder_is_not_read(tmp_path):
    planted = tmp_path / "shared"
    planted.mkdir()
    (planted / "moeq.toml").write_text(f'[moeq]\nhome = "{tmp_path / "attacker"}"\n')
    out = moeq("runs", "list", env={"MOEQ_HOME": str(tmp_path / "home")}, cwd=planted)
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "attacker").exists()


def test_a_settings_file_another_user_owns_is_refused_in_one_line(tmp_path):
    conf = tmp_path / "moeq.toml"
    conf.write_text('[moeq]\nauth = "1"\n')
    _as_nobody(conf)
    with pytest.raises(UnsafePath) as err:
        load_settings({"MOEQ_CONFIG": str(conf)})
    assert str(err.value) == (f"settings file {conf} is owned by uid {NOBODY}, not by you (uid {os.geteuid()}); "
                              f"refusing to read it")


def test_a_writable_settings_file_or_folder_is_refused(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    conf = folder / "moeq.toml"
    conf.write_text('[moeq]\nauth = "1"\n')
    conf.chmod(0o666)
    with pytest.raises(UnsafePath, match=r"moeq.toml is writable by others \(mode 666\); refusing to read it$"):
        load_settings({"MOEQ_CONFIG": str(conf)})
    conf.chmod(0o644)
    folder.chmod(0o1777)  # like /tmp
    with pytest.raises(UnsafePath, match=r"^the folder .*shared of settings file .* is writable by others"):
        load_settings({"MOEQ_CONFIG": str(conf)})
    folder.chmod(0o755)
    assert load_settings({"MOEQ_CONFIG": str(conf), "MOEQ_HOME": str(tmp_path / "h")}).auth


def test_the_home_file_is_read_when_it_is_private(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "moeq.toml").write_text('[moeq]\nlogin_lock_s = "42"\n')
    assert load_settings({"MOEQ_HOME": str(home)}).login_lock_s == 42


@pytest.mark.parametrize("command", [["worker"], ["run", "--model", "m"], ["serve", "--port", "1"]])
def test_a_home_another_user_owns_stops_serve_worker_and_run(tmp_path, command):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    _as_nobody(home)
    out = moeq(*command, env={"MOEQ_HOME": str(home)})
    assert out.returncode == 2 and out.stderr.strip() == (
        f"moeq: error: MOEQ_HOME {home} is owned by uid {NOBODY}, not by you (uid {os.geteuid()}); refusing to use it "
        f"(chown/chmod it, or point MOEQ_HOME at a private folder)"), out.stderr
    shutil.rmtree(home)


def test_a_world_writable_home_stops_serve(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o777)
    out = moeq("serve", "--port", "1", env={"MOEQ_HOME": str(home)})
    assert out.returncode == 2 and "is writable by others (mode 777); refusing to use it" in out.stderr, out.stderr
