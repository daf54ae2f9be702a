"""`moeq worker` — a Celery worker for team mode (one job at a time; one worker per GPU)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("worker", help="run a job worker on the 'gpu' queue (team mode: set MOEQ_BROKER_URL)")
    p.add_argument("--loglevel", default="INFO")
    p.add_argument("--name", help="worker node name (default moeq-<host>-<pid>)")
    p.set_defaults(handler=handle)


def handle(args, settings) -> int:
    from moeq.jobs.worker import run_worker

    run_worker(settings, args.loglevel, args.name)
    return 0
