"""Turnaround of the quick-start job: `moeq run --model testbed-mixtral --bits W4A16 --techniques gptq`
with the default calibration and evaluation, end to end through the CLI, with the stage breakdown.

Runs in a fresh MOEQ_HOME (the zoo model is installed before timing): one "cold" run computes the FP
reference evaluation, then `--warm N` runs find it cached (every later run of the model). Wall time
and the CPU seconds (user+sys) of each `moeq` process are reported, because on a shared machine the
wall time says as much about the neighbours as about moeq; "other" is the wall time outside the
pipeline's stages (interpreter start-up, imports, settings, database).

`--cpu-stages` adds one warm run in a single process that records, at every stage change, the wall
and CPU seconds spent so far (imports included): a breakdown that load from other jobs disturbs far
less than wall time.

    python benchmarks/turnaround.py [--warm 3] [--threads N] [--cpu-stages] \
        [--out benchmarks/results/turnaround.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "testbed-mixtral"
CMD = ["run", "--model", MODEL, "--bits", "W4A16", "--techniques", "gptq", "--json", "-q"]
STAGES = ("load_s", "fp_evaluate_s", "calibrate_s", "quantize_s", "evaluate_s")


def one_run(env: dict, root: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "moeq.app.cli", *CMD], cwd=root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"run failed: {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout)
    timings = {s: float(result["timings"].get(s, 0.0)) for s in STAGES}
    return {"wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "other_s": wall - sum(timings.values()), "timings": timings,
            "avg_accuracy": result["metrics"]["avg_accuracy"], "kl": result["metrics"]["kl"],
            "mean_topk_agreement": (result["metrics"].get("routing") or {}).get("mean_topk_agreement"),
            "run_id": result["run_id"], "load_avg_after": os.getloadavg()[0]}


def in_process_stages(root: Path) -> None:
    """(child process) One run through moeq.jobs.submit with a progress callback that marks every stage."""
    sys.path.insert(0, str(root))  # the project's packages before this folder (benchmarks/moe_kernels.py)
    w0, c0 = time.perf_counter(), time.process_time()
    marks = [("start", 0.0, 0.0)]

    def mark(name: str) -> None:
        marks.append((name, time.perf_counter() - w0, time.process_time() - c0))

    import torch  # noqa: F401  (timed on its own: every moeq process pays it)

    mark("import torch")
    from moeq.jobs.settings import load_settings
    from moeq.jobs.submit import create_and_execute

    mark("import moeq")
    last = [None]

    def progress(stage: str, fraction: float) -> None:
        name = stage.split(":")[0].split(" layer")[0].strip()
        if name != last[0]:
            mark(name)
            last[0] = name

    recipe = {"model": MODEL, "weights": {"bits": 4}, "techniques": [{"name": "gptq"}]}
    result = create_and_execute(load_settings(), recipe, progress=progress)
    mark("end")
    if result["status"] != "succeeded":
        raise SystemExit(f"run {result['status']}: {result.get('error')}")
    rows = [{"stage": a[0], "wall_s": b[1] - a[1], "cpu_s": b[2] - a[2]} for a, b in zip(marks, marks[1:])]
    print(json.dumps({"rows": rows, "status": result["status"], "kl": result["metrics"]["kl"],
                      "avg_accuracy": result["metrics"]["avg_accuracy"], "threads": torch.get_num_threads()}))


def cpu_stages(env: dict, root: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--_in-process", "--root", str(root)], cwd=root, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"in-process run failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _commit(root: Path) -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    return out.stdout.strip()


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warm", type=int, default=3, help="warm runs after the cold one (default 3)")
    ap.add_argument("--threads", type=int, default=None, help="OMP/torch threads (default: torch's choice)")
    ap.add_argument("--cpu-stages", action="store_true", help="also one in-process run with per-stage CPU seconds")
    ap.add_argument("--root", type=Path, default=ROOT,
                    help="the moeq checkout to measure (default: this one), e.g. another branch's worktree")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--_in-process", dest="in_process", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.in_process:
        in_process_stages(args.root.resolve())
        return
    root = args.root.resolve()
    home = Path(tempfile.mkdtemp(prefix="moeq-turnaround-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOEQ_")}
    env.update(MOEQ_HOME=str(home), PYTHONPATH=str(root))
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    subprocess.run([sys.executable, "-m", "moeq.app.cli", "zoo", "build", MODEL], cwd=root, env=env, check=False,
                   capture_output=True)
    load_before = os.getloadavg()[0]
    runs = {"cold": one_run(env, root)}
    for i in range(args.warm):
        runs[f"warm{i + 1}"] = one_run(env, root)
    print(f"{root} at {_commit(root)}: load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, "
          f"on {os.cpu_count()} CPUs; threads {args.threads or 'default'}")
    print("| run | wall s | user+sys CPU s | other s | " + " | ".join(s[:-2] + " s" for s in STAGES)
          + " | avg acc | KL | top-k agreement |")
    print("|---|---|---|---|" + "---|" * len(STAGES) + "---|---|---|")
    for name, r in runs.items():
        cells = " | ".join(f"{r['timings'][s]:.1f}" for s in STAGES)
        print(f"| {name} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['other_s']:.1f} | {cells} | "
              f"{r['avg_accuracy']:.3f} | {r['kl']:.5f} | {r['mean_topk_agreement']:.4f} |")
    warm = [r for n, r in runs.items() if n != "cold"]
    summary = {}
    if warm:
        summary = {"warm_wall_s": [r["wall_s"] for r in warm], "warm_cpu_s": [r["cpu_s"] for r in warm]}
        print(f"\nwarm runs: wall {_spread(summary['warm_wall_s'])} s, CPU {_spread(summary['warm_cpu_s'])} s "
              f"(median, min–max of {len(warm)})")
    stages = cpu_stages(env, root) if args.cpu_stages else None
    if stages:
        print(f"\nin-process warm run, {stages['threads']} thread(s): wall and CPU seconds per stage")
        print("| from | wall s | CPU s |\n|---|---|---|")
        for row in stages["rows"]:
            print(f"| {row['stage']} | {row['wall_s']:.2f} | {row['cpu_s']:.2f} |")
        print(f"| total | {sum(r['wall_s'] for r in stages['rows']):.2f} | "
              f"{sum(r['cpu_s'] for r in stages['rows']):.2f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "root": str(root),
                                        "commit": _commit(root),
                                        "load_avg_before": load_before, "cpus": os.cpu_count(),
                                        "threads": args.threads, "runs": runs, "summary": summary,
                                        "cpu_stages": stages}, indent=1))


if __name__ == "__main__":
    main()
