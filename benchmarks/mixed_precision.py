"""Router-norm expert-wise mixed precision vs random allocation (same tier counts) vs uniform at the
nearest bits, sweeping the average bits with tiers {2,3} and {2,3,4}: accuracy, KL, routing
agreement and allocation time. GPTQ per-channel for every allocation. "rare acc" is the mean
accuracy on the tasks of the rare corpus domains (cnt, cap: 5 % and 3 % of the training text) —
the paper's argument is that experts with small router-norm change hold rare but critical features.

    python benchmarks/mixed_precision.py --model testbed-mixtral --out benchmarks/mixed_precision.json
"""

from __future__ import annotations

import statistics
from pathlib import Path

from common import context, standard_args, headline, print_table, run_recipe, write_json

RARE = ("cnt", "cap")


def rare_accuracy(result: dict) -> float:
    acc = result["metrics"]["accuracy"]
    return statistics.mean(v for k, v in acc.items() if k.split("_")[0] in RARE)


def summary(result: dict) -> dict:
    return {**headline(result), "rare_accuracy": rare_accuracy(result)}


SWEEP = ((2.25, (2, 3)), (2.5, (2, 3)), (2.75, (2, 3)), (2.5, (2, 3, 4)), (3.0, (2, 3, 4)))


def recipe(model: str, alloc: dict | None, bits: int, args) -> dict:
    return {"model": model, "weights": {"bits": bits, "group_size": None}, "techniques": [{"name": "gptq"}],
            "allocation": alloc, "calibration": {"samples": args.samples, "seq_len": 256},
            "eval": {"tasks": ["testbed"], "limit": args.limit, "ppl_windows": 16, "seq_len": 256}}


def main() -> None:
    ap = standard_args(__doc__)
    ap.add_argument("--random-seeds", type=int, default=3)
    args = ap.parse_args()
    ctx = context()
    rows = []
    for avg, tiers in SWEEP:
        base = {"avg_bits": avg, "tiers": list(tiers), "other_bits": 4}
        for method, score in (("router_norm", "final_norm"), ("router_norm", "norm_change")):
            result, _ = run_recipe(recipe(args.model, {**base, "method": method, "score": score}, 4, args), ctx)
            rows.append({"avg": avg, "tiers": str(tiers), "method": f"router_norm ({score})", **summary(result),
                         "alloc_s": result["diagnostics"]["allocation"]["seconds"]})
        rand = [summary(run_recipe(recipe(args.model, {**base, "method": "random", "seed": s}, 4, args), ctx)[0])
                for s in range(args.random_seeds)]
        rows.append({"avg": avg, "tiers": str(tiers), "method": f"random (mean of {args.random_seeds})",
                     **{k: statistics.mean(r[k] for r in rand) for k in ("avg_accuracy", "rare_accuracy", "kl", "mean_topk_agreement")}})
        nearest = min(tiers, key=lambda t: (abs(t - avg), t))
        result, _ = run_recipe(recipe(args.model, None, nearest, args), ctx)
        rows.append({"avg": avg, "tiers": str(tiers), "method": f"uniform W{nearest}", **summary(result)})
    print(f"# Expert-wise mixed precision on {args.model} (GPTQ per-channel, non-expert weights 4-bit)")
    print_table(rows, [("avg bits", "avg", ".2f"), ("tiers", "tiers", ""), ("method", "method", ""),
                       ("avg acc", "avg_accuracy", ".3f"), ("rare acc", "rare_accuracy", ".3f"), ("KL", "kl", ".4f"),
                       ("top-k agree", "mean_topk_agreement", ".3f"), ("alloc s", "alloc_s", ".4f")])
    write_json(args.out, {"model": args.model, "rows": rows})


if __name__ == "__main__":
    main()
