"""Turnaround of the quick-start job: `moeq run --model testbed-mixtral --bits W4A16 --techniques gptq`
with the default calibration and evaluation, end to end through the CLI, with the stage breakdown.

Two runs in a fresh MOEQ_HOME (the zoo model is installed before timing): "cold" computes the FP
reference evaluation, "warm" finds it cached (every later run of the model). Wall time and the CPU
seconds (user+sys) of the `moeq` process are reported, because on a shared machine the wall time
says as much about the neighbours as about moeq.

    python benchmarks/turnaround.py [--threads N] [--out benchmarks/results/turnaround.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CMD = ["run", "--model", "testbed-mixtral", "--bits", "W4A16", "--techniques", "gptq", "--json", "-q"]


def one_run(env: dict) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "app.cli", *CMD], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"run failed: {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout)
    return {"wall_s": wall, "user_s": after.ru_utime - before.ru_utime, "sys_s": after.ru_stime - before.ru_stime,
            "timings": result["timings"], "avg_accuracy": result["metrics"]["avg_accuracy"],
            "kl": result["metrics"]["kl"], "run_id": result["run_id"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="OMP/torch threads (default: torch's choice)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="moeq-turnaround-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOEQ_")}
    env.update(MOEQ_HOME=str(home), PYTHONPATH=str(ROOT))
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    subprocess.run([sys.executable, "-m", "app.cli", "zoo", "build", "testbed-mixtral"], cwd=ROOT, env=env,
                   check=False, capture_output=True)
    rows = {"cold": one_run(env), "warm": one_run(env)}
    stages = ("load_s", "fp_evaluate_s", "calibrate_s", "quantize_s", "evaluate_s")
    print(f"load avg {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; threads {args.threads or 'default'}")
    print("| run | wall s | user+sys CPU s | " + " | ".join(s[:-2] + " s" for s in stages) + " | avg acc | KL |")
    print("|---|---|---|" + "---|" * len(stages) + "---|---|")
    for name, r in rows.items():
        cells = " | ".join(f"{r['timings'].get(s, 0.0):.1f}" for s in stages)
        print(f"| {name} | {r['wall_s']:.1f} | {r['user_s'] + r['sys_s']:.1f} | {cells} | {r['avg_accuracy']:.3f} | "
              f"{r['kl']:.4f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"load_avg": os.getloadavg(), "threads": args.threads, "runs": rows},
                                       indent=1))


if __name__ == "__main__":
    main()
