"""MoQE on the testbed: three variants of different methods at the same bits, the routed mixture vs
each variant vs the per-sample oracle on held-out windows, usage and router overhead.

    python benchmarks/moqe.py --model testbed-mixtral --bits 3 --out benchmarks/moqe.json

`--windows per-domain` makes every training and held-out window hold documents of one domain only
(the default corpus stream mixes ~7 short documents of different domains into each window), to see
whether the router can use a per-input signal about which variant wins when there is one.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import context, run_recipe, write_json


def per_domain_text(path: Path, n_windows: int, body: int, seed: int, split: str) -> str:
    """Write single-domain blocks of `body` characters (one window each) to `path`; 'file:<path>'."""
    from moeq.quant_core.zoo.corpus import domain_blocks

    path.write_text(domain_blocks(seed, n_windows, body, split), encoding="utf-8")
    return f"file:{path}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="testbed-mixtral")
    ap.add_argument("--bits", type=int, default=3)
    ap.add_argument("--windows", choices=("mixed", "per-domain"), default="mixed")
    ap.add_argument("--seed", type=int, default=0, help="recipe seed (calibration/evaluation windows, router init)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    w = {"bits": args.bits, "group_size": None}
    train_src = eval_src = "auto"
    if args.windows == "per-domain":
        tmp = Path(tempfile.mkdtemp(prefix="moqe-windows-"))
        # the router trains on the windows after the variants' 64 × 255 calibration tokens (129 blocks)
        train_src = per_domain_text(tmp / "train.txt", 512 + 129, 127, 1, "calib")
        eval_src = per_domain_text(tmp / "heldout.txt", 256, 127, 2, "heldout")
    recipe = {"model": args.model, "calibration": {"source": train_src, "samples": 64, "seq_len": 256},
              "eval": {"source": eval_src, "tasks": ["testbed"], "limit": 50, "seq_len": 128},
              "moqe": {"variants": [{"weights": w, "techniques": ["rtn"]},
                                    {"weights": w, "techniques": ["gptq"]},
                                    {"weights": w, "techniques": ["rotation", "gptq"]},
                                    {"weights": {**w, "symmetric": False}, "techniques": [{"name": "rtn", "clip_search": True}]}],
                       "train_samples": 512, "eval_samples": 256, "epochs": 40}, "seed": args.seed}
    result, seconds = run_recipe(recipe, context())
    m, q = result["metrics"], result["moqe"]
    print(f"# MoQE on {args.model}, W{args.bits} variants, {args.windows} windows, seed {args.seed} ({seconds:.0f} s)")
    print("| model | perplexity | avg acc | KL |\n|---|---|---|---|")
    for v in q["variants"]:
        print(f"| {v['label']} | {v['perplexity']:.4f} | {v['avg_accuracy']:.3f} | {v['kl']:.4f} |")
    print(f"| **routed mixture** | {m['perplexity']:.4f} | {m['avg_accuracy']:.3f} | {m['kl']:.4f} |")
    print(f"| per-sample oracle | {q['oracle']['perplexity']:.4f} | - | - |")
    print(f"| FP | {m['fp_perplexity']:.4f} | {m['fp_avg_accuracy']:.3f} | 0 |")
    print(f"\nusage {['%.2f' % u for u in q['usage']]}, training labels {['%.2f' % u for u in q['train_label_distribution']]}, "
          f"router overhead {100 * q['router_overhead']['ratio']:.1f}% of one model forward")
    print(f"router trained on: {q['router_train_windows']}")
    write_json(args.out, result)


if __name__ == "__main__":
    main()
