"""Who may have planted a settings file or a home folder: refused unless it belongs to the user who
runs moeq (or root) and nobody else can write it — on a shared host another local account could
otherwise point `home` at a folder it owns, and read and rewrite the database and artifacts there.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

from moeq.contract.errors import MoeqError
from moeq.contract.safe_open import regular_file

MAX_SETTINGS_BYTES = 64 * 1024


class UnsafePath(MoeqError):
    """A settings file or home folder another local account owns or may write."""


def _owners() -> tuple[int, ...]:
    return (os.geteuid(), 0)


def _problem(st: os.stat_result, owners: tuple[int, ...]) -> str | None:
    if st.st_uid not in owners:
        return f"owned by uid {st.st_uid}, not by you (uid {os.geteuid()})"
    if st.st_mode & 0o022:
        return f"writable by {'others' if st.st_mode & 0o002 else 'its group'} (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def read_settings_file(path: Path) -> dict:
    """The [moeq] table of the TOML file `path`; UnsafePath (one line) if it or its folder is owned
    by another user or writable by group or others, or it is not a small regular file."""
    try:
        with regular_file(path) as (f, st):
            problem = _problem(st, _owners())
            folder = path.resolve().parent
            folder_problem = _problem(folder.stat(), _owners())
            if problem or folder_problem:
                where = f"settings file {path}" if problem else f"the folder {folder} of settings file {path}"
                raise UnsafePath(f"{where} is {problem or folder_problem}; refusing to read it")
            data = f.read(MAX_SETTINGS_BYTES + 1)
    except OSError as exc:
        raise UnsafePath(f"settings file {path}: cannot read it: {exc.strerror or exc}") from None
    if len(data) > MAX_SETTINGS_BYTES:
        raise UnsafePath(f"settings file {path}: larger than {MAX_SETTINGS_BYTES} bytes")
    try:
        values = tomllib.loads(data.decode("utf-8")).get("moeq", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise UnsafePath(f"settings file {path}: not valid TOML: {exc}") from None
    if not isinstance(values, dict):
        raise UnsafePath(f"settings file {path}: [moeq] must be a table")
    return values


def check_home(home: Path) -> None:
    """An existing home must be the caller's own (or root's) and writable by nobody else."""
    try:
        st = home.stat()
    except FileNotFoundError:
        return
    problem = _problem(st, (os.geteuid(),))
    if problem:
        raise UnsafePath(f"MOEQ_HOME {home} is {problem}; refusing to use it "
                         f"(chown/chmod it, or point MOEQ_HOME at a private folder)")
