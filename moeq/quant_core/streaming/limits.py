"""Run a command under a real memory limit (a cgroup-v1 memory cgroup nested under this process's
own), for the memory tests and the scale benchmark: the limit is the kernel's, not the code's."""

from __future__ import annotations

import itertools
import os
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MEMORY_ROOT = Path("/sys/fs/cgroup/memory")
_seq = itertools.count()


def _own_cgroup() -> Path | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                return MEMORY_ROOT / path.lstrip("/")
    except OSError:
        return None
    return None


def cgroup_unavailable_reason() -> str | None:
    """None when memory cgroups can be made here; else why not (for a clear skip)."""
    own = _own_cgroup()
    if own is None or not (own / "memory.limit_in_bytes").is_file():
        return "no cgroup-v1 memory controller mounted at /sys/fs/cgroup/memory"
    if not os.access(own, os.W_OK):
        return f"cannot create memory cgroups under {own} (not writable)"
    return None


@dataclass(frozen=True)
class LimitedRun:
    returncode: int
    stdout: str
    stderr: str
    limit_bytes: int
    max_usage_bytes: int  # the cgroup's peak charge (RSS + page cache it touched)
    failcnt: int  # times the limit was hit (reclaim kicked in)


@contextmanager
def memory_cgroup(limit_bytes: int | None):
    own = _own_cgroup()
    cg = own / f"moeq-limit-{os.getpid()}-{next(_seq)}"
    cg.mkdir()
    try:
        if limit_bytes is not None:
            (cg / "memory.limit_in_bytes").write_text(str(limit_bytes))
            memsw = cg / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                memsw.write_text(str(limit_bytes))  # no escape into swap
        yield cg
    finally:
        try:
            cg.rmdir()
        except OSError:
            pass


def run_limited(cmd: list[str], limit_bytes: int | None, timeout: float, env: dict | None = None,
                cwd: str | None = None) -> LimitedRun:
    """Run `cmd` inside a fresh memory cgroup with `limit_bytes` (None: measure only)."""
    with memory_cgroup(limit_bytes) as cg:
        wrapped = ["sh", "-c", f'echo $$ > "{cg}/cgroup.procs" && exec "$@"', "sh", *cmd]
        proc = subprocess.run(wrapped, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
        usage = int((cg / "memory.max_usage_in_bytes").read_text())
        fails = int((cg / "memory.failcnt").read_text())
    return LimitedRun(proc.returncode, proc.stdout, proc.stderr, limit_bytes or 0, usage, fails)
