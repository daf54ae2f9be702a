"""Worker entry: `moeq worker` / `python -m moeq.jobs.worker` — one Celery worker, one job at a time."""

from __future__ import annotations

import os
import platform
import signal
import sys
import threading
import time

from moeq.db.store import Store
from moeq.jobs.celery_app import QUEUE, make_celery
from moeq.jobs.reaper import ReaperThread
from moeq.jobs.settings import Settings, ensure_home, load_settings


def watch_parent(parent_pid: int, interval: float = 1.0) -> threading.Thread:
    """Exit this process (SIGTERM to itself, then hard) once `parent_pid` is gone: a worker started by
    `moeq serve` never outlives the server, even when the server was SIGKILLed."""

    def loop() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent_pid:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(10)
                os._exit(1)

    thread = threading.Thread(target=loop, name="moeq-parent-watch", daemon=True)
    thread.start()
    return thread


def run_worker(settings: Settings, loglevel: str = "INFO", name: str | None = None) -> None:
    """Block running a solo-pool worker on the `gpu` queue, with a background reaper."""
    parent = os.environ.get("MOEQ_PARENT_PID")
    if parent and parent.isdigit():
        watch_parent(int(parent))
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ensure_home(settings)
    store = Store(settings.database_url)
    app = make_celery(settings)
    reaper = ReaperThread(settings, store, app).start()
    node = name or f"moeq-{platform.node()}-{os.getpid()}"
    try:
        app.worker_main(["worker", "--pool=solo", "--concurrency=1", "-Q", QUEUE, "-n", f"{node}@%h",
                         f"--loglevel={loglevel}", "--without-gossip", "--without-mingle", "--without-heartbeat"])
    finally:
        reaper.stop()
        store.dispose()


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="moeq-worker")
    ap.add_argument("--loglevel", default="INFO")
    ap.add_argument("--name")
    args = ap.parse_args(argv)
    run_worker(load_settings(), args.loglevel, args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
