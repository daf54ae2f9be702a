"""MoQE on the testbed: three variants of different methods at the same bits, the routed mixture vs
each variant vs the per-sample oracle on held-out windows, usage and router overhead.

    python benchmarks/moqe.py --model testbed-mixtral --bits 3 --out benchmarks/moqe.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import context, run_recipe, write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="testbed-mixtral")
    ap.add_argument("--bits", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    w = {"bits": args.bits, "group_size": None}
    recipe = {"model": args.model, "calibration": {"samples": 64, "seq_len": 256},
              "eval": {"tasks": ["testbed"], "limit": 50, "seq_len": 128},
              "moqe": {"variants": [{"weights": w, "techniques": ["rtn"]},
                                    {"weights": w, "techniques": ["gptq"]},
                                    {"weights": w, "techniques": ["rotation", "gptq"]},
                                    {"weights": {**w, "symmetric": False}, "techniques": [{"name": "rtn", "clip_search": True}]}],
                       "train_samples": 512, "eval_samples": 256, "epochs": 40}}
    result, seconds = run_recipe(recipe, context())
    m, q = result["metrics"], result["moqe"]
    print(f"# MoQE on {args.model}, W{args.bits} variants ({seconds:.0f} s)")
    print("| model | perplexity | avg acc | KL |\n|---|---|---|---|")
    for v in q["variants"]:
        print(f"| {v['label']} | {v['perplexity']:.4f} | {v['avg_accuracy']:.3f} | {v['kl']:.4f} |")
    print(f"| **routed mixture** | {m['perplexity']:.4f} | {m['avg_accuracy']:.3f} | {m['kl']:.4f} |")
    print(f"| per-sample oracle | {q['oracle']['perplexity']:.4f} | - | - |")
    print(f"| FP | {m['fp_perplexity']:.4f} | {m['fp_avg_accuracy']:.3f} | 0 |")
    print(f"\nusage {['%.2f' % u for u in q['usage']]}, training labels {['%.2f' % u for u in q['train_label_distribution']]}, "
          f"router overhead {100 * q['router_overhead']['ratio']:.1f}% of one model forward")
    write_json(args.out, result)


if __name__ == "__main__":
    main()
