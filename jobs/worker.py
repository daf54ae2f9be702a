"""Worker entry: `moeq worker` / `python -m jobs.worker` — one Celery worker, one job at a time."""

from __future__ import annotations

import os
import platform
import sys

from db.store import Store
from jobs.celery_app import make_celery
from jobs.reaper import ReaperThread
from jobs.settings import Settings, ensure_home, load_settings
from jobs.submit import QUEUE


def run_worker(settings: Settings, loglevel: str = "INFO", name: str | None = None) -> None:
    """Block running a solo-pool worker on the `gpu` queue, with a background reaper."""
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
