"""Study overhead against the runs' own time, and the Compare page with 8 runs.

1. A 24-run study (2 bits × 2 techniques × 2 allocations × 3 seeds on testbed-mixtral): the time to
   admit, record and queue it as one Celery group on Redis (no worker: the runs are not executed),
   plus the study page (show + grid table + both Pareto charts + best-at-B) once its 24 runs hold real
   results — against 24 × the median total stage seconds of the real runs given (`--results`:
   result JSONs of testbed-mixtral runs of the same settings, e.g. from `moeq runs show ID --json`).
2. The Compare page's callback with 8 of those runs (each a copy of a given result): its main render
   (metrics, tables, charts) and, separately, the paired-differences table it fills in afterwards.

    python benchmarks/studies.py --results r1.json r2.json r3.json --out benchmarks/results/studies.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

AXES = ["bits=W3A16,W4A16", "techniques=gptq,rtn", "allocation.method=uniform,router_norm"]
BASE = {"model": "testbed-mixtral", "weights": {"group_size": 64}, "calibration": {"samples": 32, "seq_len": 256},
        "eval": {"tasks": ["testbed"], "limit": 50, "ppl_windows": 8, "seq_len": 256, "kl_tokens": 2048}}


def _store_results(store, run_ids: list[str], results: list[dict]) -> None:
    from moeq.db.repository.results import store_result
    from moeq.db.repository.runs import claim_run

    for i, rid in enumerate(run_ids):
        with store.session() as s:
            claim_run(s, rid, "bench", "cpu")
            store_result(s, rid, results[i % len(results)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", nargs="+", type=Path, required=True)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    results = [json.loads(p.read_text()) for p in args.results]
    run_s = statistics.median(sum(v for v in r["timings"].values()) for r in results)

    home = Path(tempfile.mkdtemp(prefix="moeq-bench-studies-"))
    db = random.randint(1, 15)
    os.environ.update(MOEQ_HOME=str(home), MOEQ_DATABASE_URL=f"sqlite:///{home / 'moeq.sqlite'}",
                      MOEQ_BROKER_URL=f"{args.redis}/{db}")
    import redis

    redis.Redis.from_url(f"{args.redis}/{db}").flushdb()
    from moeq.app.services import AppServices
    from moeq.app.study_services import StudyServices
    from moeq.app.study_view import best_text, pareto_figure, study_html
    from moeq.app.tabs import compare
    from moeq.db.repository.studies import study_runs
    from moeq.db.store import Store
    from moeq.jobs.settings import load_settings

    settings = load_settings()
    svc = AppServices(settings=settings, store=Store(settings.database_url))
    studies = StudyServices(svc)
    studies.plan("local", json.dumps(BASE), "\n".join(AXES), "0,1,2")  # warm: imports, zoo model install
    t = time.perf_counter()
    sid = studies.launch("local", "default", "bench", json.dumps(BASE), "\n".join(AXES), "0,1,2")
    queue_s = time.perf_counter() - t
    with svc.store.session() as s:
        ids = [r.id for r in study_runs(s, sid)]
    assert len(ids) == 24
    _store_results(svc.store, ids, results)
    t = time.perf_counter()
    d = studies.show("local", sid[:8])
    study_html(d), pareto_figure(d, "avg_accuracy"), pareto_figure(d, "kl"), best_text(d, 3.5)
    page_s = time.perf_counter() - t
    own_s = 24 * run_s

    import gradio as gr

    with gr.Blocks():
        tab = compare.build(svc)
    eight = ids[:8]
    t = time.perf_counter()
    *_, runs = tab["compare"](" ".join(r[:8] for r in eight), SimpleNamespace(username=None))
    compare_s = time.perf_counter() - t
    t = time.perf_counter()
    tab["paired"](eight[0], runs)
    paired_s = time.perf_counter() - t
    redis.Redis.from_url(f"{args.redis}/{db}").flushdb()
    svc.close()

    out = {"runs_in_study": 24, "median_run_s": round(run_s, 1), "runs_own_s": round(own_s, 1),
           "queue_s": round(queue_s, 3), "page_s": round(page_s, 3),
           "overhead_fraction": round((queue_s + page_s) / own_s, 5),
           "compare_8_runs_render_s": round(compare_s, 3), "compare_8_runs_paired_table_s": round(paired_s, 3),
           "load_average_1m": round(os.getloadavg()[0], 1), "cpus": os.cpu_count(),
           "results_from": [str(p) for p in args.results]}
    print(json.dumps(out, indent=1))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
