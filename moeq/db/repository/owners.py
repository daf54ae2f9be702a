"""Which process executes a run, and whether it is still alive (runs of a process that died are ended).

A `moeq run` executes its run in its own process: the run records that process (pid, host and the
process's start time, which tells a reused pid apart). When the process is gone — SIGKILL, a crash, a
closed terminal — nothing will ever finish the run, and no worker may take it over (the user never
queued it to one): the next process on the same host that opens the store ends it as
"failed: interrupted"; on another host, the reaper does once its heartbeat is older than the lease.
"""

from __future__ import annotations

import logging
import os
import platform

from sqlalchemy import select
from sqlalchemy.orm import Session

from moeq.db.models import Run, utcnow

log = logging.getLogger(__name__)
CLI = "cli"  # Run.origin of a run its `moeq run` process executes
QUEUE = "queue"  # Run.origin of a run queued to the workers


def this_host() -> str:
    return platform.node()


def process_start(pid: int) -> str | None:
    """A token for when process `pid` started (Linux: clock ticks since boot), None when unknown or gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces and parentheses
    return fields[19] if len(fields) > 19 else None


def owner_token() -> tuple[int, str | None]:
    """(pid, start token) of this process, recorded when it claims a run."""
    pid = os.getpid()
    return pid, process_start(pid)


def process_alive(pid: int | None, start: str | None) -> bool:
    """True when process `pid` on this host runs and (when known) started at `start`."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    now = process_start(pid)
    return start is None or now is None or now == start


def end_interrupted(run: Run, status: str, stage: str, message: str) -> None:
    """End a run its process can no longer finish (status 'cancelled' or 'failed'); results: none."""
    run.status, run.stage, run.finished_at = status, stage[:256], utcnow()
    run.error_type, run.error_message = "Interrupted", message[:10_000]


def end_dead_cli_runs(s: Session, host: str | None = None) -> list[str]:
    """End the unfinished `moeq run` runs of this host whose process is gone; returns their ids."""
    host = host or this_host()
    rows = s.scalars(select(Run).where(Run.origin == CLI, Run.worker_host == host,
                                       Run.status.in_(("queued", "running"))))
    ended = []
    for run in rows:
        if process_alive(run.owner_pid, run.owner_start):
            continue
        end_interrupted(run, "failed", "failed: interrupted",
                        f"its moeq run process (pid {run.owner_pid} on {host}) ended before the run finished "
                        "(killed or crashed); no results were stored")
        log.warning("run %s: its process %s is gone; marked failed: interrupted", run.id[:8], run.owner_pid)
        ended.append(run.id)
    return ended
