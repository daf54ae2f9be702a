"""Load benchmark: 200 small runs across 2 workers on Redis (all must finish, db rows consistent),
and the runs-table query time with 10,000 stored runs (SQLite and PostgreSQL).

    python benchmarks/load.py --out benchmarks/results/load.json
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, func, select, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from moeq.db.models import Run  # noqa: E402
from moeq.db.repository.queries import RunFilter, list_runs  # noqa: E402
from moeq.db.repository.results import store_result  # noqa: E402
from moeq.db.repository.runs import claim_run, create_run  # noqa: E402
from moeq.db.store import Store  # noqa: E402
from moeq.jobs.settings import load_settings  # noqa: E402
from moeq.jobs.submit import submit  # noqa: E402
from tests.jobs.conftest import TINY, Workers, _env, wait_for  # noqa: E402

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def many_jobs(n_runs: int, n_workers: int) -> dict:
    home = Path(tempfile.mkdtemp()) / "home"
    home.mkdir(parents=True)
    db = random.randint(1, 15)
    import redis

    redis.Redis(host="127.0.0.1", port=6379, db=db).flushdb()
    env = _env(home, f"sqlite:///{home / 'moeq.sqlite'}", f"redis://127.0.0.1:6379/{db}")
    settings, store, workers = load_settings(env), Store(env["MOEQ_DATABASE_URL"]), Workers(env)
    try:
        for i in range(n_workers):
            workers.start(f"load-{i}")
        t0 = time.perf_counter()
        ids = [submit(settings, store, {**TINY, "seed": i}) for i in range(n_runs)]
        enqueue_s = time.perf_counter() - t0
        statuses = [wait_for(store, rid, ("succeeded", "failed"), timeout=3600) for rid in ids]
        total_s = time.perf_counter() - t0
        with store.session() as s:
            done = s.scalar(select(func.count()).select_from(Run).where(Run.status == "succeeded"))
            hosts = len(set(s.scalars(select(Run.worker_host))))
            metrics = s.scalar(select(func.count()).select_from(Run).where(Run.kl.is_not(None)))
            experts = sum(len((r or {}).get("expert_stats") or []) for r in s.scalars(select(Run.result)))
    finally:
        workers.stop_all()
        store.dispose()
    return {"runs": n_runs, "workers": n_workers, "succeeded": statuses.count("succeeded"), "db_succeeded": done,
            "runs_with_metrics": metrics, "expert_rows": experts, "workers_used": hosts,
            "enqueue_s": round(enqueue_s, 2), "total_s": round(total_s, 1),
            "runs_per_minute": round(60 * n_runs / total_s, 1)}


def seed_runs(store: Store, n: int) -> None:
    result = {"metrics": {"kl": 0.01, "avg_accuracy": 0.5, "accuracy": {"t": 0.5}, "perplexity": 3.0},
              "bits": {"avg_weight_bits": 4.0}}
    with store.session() as s:
        for i in range(n):
            run = create_run(s, {"model": f"model-{i % 7}", "weights": {"bits": 4}}, summary=f"W4A16 rtn seed {i}",
                             techniques="rtn" if i % 2 else "gptq", user=f"user{i % 5}", project=f"p{i % 3}",
                             run_id=uuid.uuid4().hex)
            if i % 4:
                claim_run(s, run.id, "h", "cpu")
                store_result(s, run.id, {**result, "metrics": {**result["metrics"], "avg_accuracy": (i % 100) / 100}})
            if i % 500 == 0:
                s.flush()


def query_times(url: str, n: int) -> dict:
    store = Store(url)
    seed_runs(store, n)
    queries = {"newest 50": RunFilter(), "model filter": RunFilter(model="model-3"),
               "technique + sort by accuracy": RunFilter(technique="gptq", sort="accuracy"),
               "search": RunFilter(search="seed 12"), "project scope": RunFilter(projects=("p1",), status="succeeded")}
    out = {}
    with store.session() as s:
        for name, f in queries.items():
            times = []
            for _ in range(5):
                t = time.perf_counter()
                list_runs(s, f)
                times.append(time.perf_counter() - t)
            out[name] = round(1000 * statistics.median(times), 1)
    store.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--stored", type=int, default=10_000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    jobs = many_jobs(args.runs, 2)
    print(f"{jobs['runs']} runs on {jobs['workers']} workers: {jobs['succeeded']} succeeded "
          f"({jobs['db_succeeded']} in db, {jobs['runs_with_metrics']} with metrics) in {jobs['total_s']} s "
          f"= {jobs['runs_per_minute']} runs/min; enqueue {jobs['enqueue_s']} s")
    sqlite_url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'load.sqlite'}"
    name = f"moeq_load_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        times = {"sqlite": query_times(sqlite_url, args.stored),
                 "postgresql": query_times(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", args.stored)}
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    print(f"\nruns-table queries with {args.stored} stored runs (median ms):")
    print("| query | SQLite | PostgreSQL |\n|---|---|---|")
    for q in times["sqlite"]:
        print(f"| {q} | {times['sqlite'][q]} | {times['postgresql'][q]} |")
    if args.out:
        import json

        args.out.write_text(json.dumps({"jobs": jobs, "query_ms": times, "stored_runs": args.stored}, indent=1))


if __name__ == "__main__":
    main()
