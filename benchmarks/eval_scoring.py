"""Task scoring on testbed-mixtral (FP model, every testbed item): the scorer of this checkout against
the one of commit 2888852 (per-task batches, generation without KV cache), single-threaded CPU
seconds (process time, robust on a shared machine), and the accuracies (they must be equal).

    python benchmarks/eval_scoring.py [--base 2888852]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def old_scorer(commit: str):
    """score_tasks of `commit`, imported from a temporary copy of its two scoring modules."""
    tmp = Path(tempfile.mkdtemp(prefix="moeq-old-scoring-"))
    scoring = subprocess.run(["git", "show", f"{commit}:quant_core/evaluate/scoring.py"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
    tasks = subprocess.run(["git", "show", f"{commit}:quant_core/evaluate/tasks.py"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout
    (tmp / "old_scoring.py").write_text(scoring)
    (tmp / "old_tasks.py").write_text(tasks.replace("from quant_core.evaluate.scoring import",
                                                    "from old_scoring import"))
    sys.path.insert(0, str(tmp))
    from old_tasks import score_tasks

    return score_tasks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="2888852")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from common import context

    from moeq.quant_core.evaluate.task_sources import resolve_tasks
    from moeq.quant_core.evaluate.tasks import score_tasks
    from moeq.quant_core.model_io import load_model, resolve_model

    ctx = context("cpu")
    model, tok = load_model(resolve_model("testbed-mixtral", ctx), ctx)
    tasks = resolve_tasks(("testbed",), None, 0)
    dev = torch.device("cpu")
    rows = []
    for name, fn in ((f"{args.base} (per task, no KV cache)", old_scorer(args.base)), ("this checkout", score_tasks)):
        c, t = time.process_time(), time.perf_counter()
        scores = fn(model, tok, tasks, dev)
        rows.append((name, time.process_time() - c, time.perf_counter() - t, {s.name: s.acc for s in scores}))
    print("| scorer | CPU s (1 thread) | wall s | avg accuracy |\n|---|---|---|---|")
    for name, cpu, wall, acc in rows:
        print(f"| {name} | {cpu:.2f} | {wall:.2f} | {sum(acc.values()) / len(acc):.4f} |")
    print("identical accuracies:", rows[0][3] == rows[1][3])


if __name__ == "__main__":
    main()
