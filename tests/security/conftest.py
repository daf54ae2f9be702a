"""Fixtures for the attack suite: team-mode settings on a throw-away SQLite or PostgreSQL database,
users alice (project p1), bob (p2) and an admin, and helpers to start real servers and workers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from moeq.db.repository.users import add_member, ensure_user
from moeq.db.store import Store
from moeq.jobs.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = '<img src=x onerror="window.__xss=1">'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def team_env(home: Path, db_url: str, **extra) -> dict:
    env = {"MOEQ_HOME": str(home), "MOEQ_DATABASE_URL": db_url, "MOEQ_AUTH": "1"}
    env.update(extra)
    return env


@pytest.fixture()
def team(tmp_path):
    """(settings, store) in team mode (logins) with alice∈p1, bob∈p2, admin; data root tmp/data."""
    home = tmp_path / "home"
    (tmp_path / "data").mkdir()
    url = f"sqlite:///{tmp_path / 'team.sqlite'}"
    settings = load_settings(team_env(home, url, MOEQ_DATA_ROOTS=str(tmp_path / "data")))
    store = Store(url)
    with store.session() as s:
        ensure_user(s, "alice", "alice-password")
        ensure_user(s, "bob", "bob-password")
        ensure_user(s, "root", "root-password", admin=True)
        add_member(s, "p1", "alice")
        add_member(s, "p2", "bob")
    yield settings, store
    store.dispose()


def subprocess_env(env: dict) -> dict:
    out = {k: v for k, v in os.environ.items() if not k.startswith("MOEQ_")}
    out.update(env, PYTHONPATH=str(ROOT), HF_HUB_DISABLE_PROGRESS_BARS="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1")
    return out


def children_of(pid: int) -> list[int]:
    """Pids whose parent is `pid` (Linux /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(cond, timeout: float, what: str, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def moeq(*args: str, env: dict, timeout: float = 60, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "moeq.app.cli", *args], env=subprocess_env(env), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture()
def moeq_cli(monkeypatch, capsys):
    """Run `moeq ARGS` in this process (no interpreter start-up): returns (exit code, stdout, stderr)."""
    from moeq.app.cli import main

    def run(*args: str, env: dict) -> tuple[int, str, str]:
        for k in [k for k in os.environ if k.startswith("MOEQ_")]:
            monkeypatch.delenv(k)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        capsys.readouterr()
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def page_url(settings, port: int) -> str:
    """The address a browser opens: under the server's secret path when it runs without logins."""
    token = settings.home / "serve-token"
    return f"http://127.0.0.1:{port}/" + (f"s/{token.read_text().strip()}/" if token.is_file() else "")
