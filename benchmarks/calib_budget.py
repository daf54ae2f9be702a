"""Calibration budget vs quality for the quick-start job (W4 GPTQ on testbed-mixtral, default evaluation).

For each calibration size (sequences × tokens) and seed, one run through the API: KL to FP, routing
top-k agreement, perplexity, average task accuracy and the CPU seconds of the quantize stage (this
process, one thread unless --threads). The question it answers: can the quick start calibrate on
fewer tokens without losing quality? Seeds change the calibration windows and the evaluation windows.

    python benchmarks/calib_budget.py --sizes 128x512,64x512,128x256 --seeds 0,1,2 \
        --out benchmarks/results/calib_budget.json
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from common import context, headline, print_table, run_recipe, standard_args, write_json


def main() -> None:
    ap = standard_args(__doc__)
    ap.add_argument("--sizes", default="128x512,64x512,128x256,64x256")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--append", action="store_true", help="add to the rows already in --out (more seeds)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    ctx = context("cpu")
    rows = json.loads(args.out.read_text())["rows"] if args.append and args.out and args.out.is_file() else []
    for size in args.sizes.split(","):
        samples, seq_len = (int(v) for v in size.split("x"))
        for seed in (int(s) for s in args.seeds.split(",")):
            recipe = {"model": args.model, "weights": {"bits": 4}, "techniques": [{"name": "gptq"}], "seed": seed,
                      "calibration": {"samples": samples, "seq_len": seq_len}}
            c = time.process_time()
            result, wall = run_recipe(recipe, ctx)
            row = {"size": size, "seed": seed, **headline(result), "cpu_s": time.process_time() - c, "wall_s": wall}
            row["quantize_s"] = result["timings"]["quantize_s"] + result["timings"]["calibrate_s"]
            rows.append(row)
            print(f"{size} seed {seed}: KL {row['kl']:.5f} agree {row['mean_topk_agreement']:.4f} "
                  f"acc {row['avg_accuracy']:.3f} quantize {row['quantize_s']:.1f}s", file=sys.stderr, flush=True)
    print_table(rows, [("calibration", "size", ""), ("seed", "seed", ""), ("KL", "kl", ".5f"),
                       ("top-k agreement", "mean_topk_agreement", ".4f"), ("ppl", "perplexity", ".4f"),
                       ("avg acc", "avg_accuracy", ".3f"), ("quantize wall s", "quantize_s", ".1f"),
                       ("run CPU s", "cpu_s", ".1f")])
    summary = []
    for size in dict.fromkeys(r["size"] for r in rows):
        rs = [r for r in rows if r["size"] == size]
        agg = {"size": size, "n": len(rs), "seeds": sorted(r["seed"] for r in rs)}
        for k in ("kl", "mean_topk_agreement", "perplexity", "avg_accuracy", "cpu_s"):
            vals = [r[k] for r in rs]
            agg[k] = statistics.mean(vals)
            agg[k + "_range"] = max(vals) - min(vals)
        summary.append(agg)
    print()
    print_table(summary, [("calibration", "size", ""), ("seeds", "n", ""), ("KL mean", "kl", ".5f"),
                          ("KL range", "kl_range", ".5f"), ("agreement", "mean_topk_agreement", ".4f"),
                          ("agr range", "mean_topk_agreement_range", ".4f"), ("avg acc", "avg_accuracy", ".3f"),
                          ("acc range", "avg_accuracy_range", ".3f"), ("run CPU s", "cpu_s", ".1f")])
    if args.out:
        write_json(args.out, {"threads": args.threads, "rows": rows, "summary": summary})


if __name__ == "__main__":
    main()
