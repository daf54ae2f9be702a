"""Router-norm expert-wise mixed precision (the authors' ranking, variance guard and tier counts) vs a
random allocation with the same tier counts (≥ 5 seeds, mean ± std) vs uniform allocations, every row
with its average bits over *all* quantized weights and over the routed experts. Mixed rows keep
non-expert weights at `other_bits` (4, as the authors do); the uniform baseline closest in all-weights
bits is picked from every (expert bits, other bits) pair, and rows within 0.05 all-weights bits of a
mixed setting are marked equal. GPTQ per channel everywhere. "rare acc" = mean accuracy on the rare
corpus domains (cnt, cap: 5 % and 3 % of the training text).

    OMP_NUM_THREADS=1 python benchmarks/mixed_precision.py --model testbed-mixtral --out benchmarks/results/mixed-precision-mixtral.json
"""

from __future__ import annotations

import itertools
import statistics

from common import context, headline, print_table, run_recipe, standard_args, write_json

RARE = ("cnt", "cap")
SWEEP = ((2.25, (2, 3), 4), (2.25, (2, 3), 2), (3.0, (2, 3, 4), 4))  # (avg expert bits, tiers, other bits)
KEYS = ("avg_accuracy", "rare_accuracy", "kl", "mean_topk_agreement")


def rare_accuracy(result: dict) -> float:
    acc = result["metrics"]["accuracy"]
    return statistics.mean(v for k, v in acc.items() if k.split("_")[0] in RARE)


def summary(result: dict) -> dict:
    b = result["bits"]
    return {**headline(result), "rare_accuracy": rare_accuracy(result), "all_bits": b["avg_weight_bits"],
            "expert_bits": b["avg_expert_bits"]}


def recipe(model: str, alloc: dict, bits: int, args) -> dict:
    return {"model": model, "weights": {"bits": bits, "group_size": None}, "techniques": [{"name": "gptq"}],
            "allocation": alloc, "calibration": {"samples": args.samples, "seq_len": 256},
            "eval": {"tasks": ["testbed"], "limit": args.limit, "ppl_windows": 16, "seq_len": 256}}


def main() -> None:
    ap = standard_args(__doc__)
    ap.add_argument("--random-seeds", type=int, default=5)
    args = ap.parse_args()
    ctx = context()
    rows, uniform = [], {}

    def run_uniform(b: int, o: int) -> dict:
        if (b, o) not in uniform:
            res, _ = run_recipe(recipe(args.model, {"method": "uniform", "other_bits": o}, b, args), ctx)
            uniform[(b, o)] = summary(res)
        return uniform[(b, o)]
    frac = None
    for avg, tiers, other in SWEEP:
        base = {"avg_bits": avg, "tiers": list(tiers), "other_bits": other}
        setting = {"avg": avg, "tiers": ",".join(map(str, tiers)), "other": other}
        for score in ("final_norm", "norm_change"):
            result, _ = run_recipe(recipe(args.model, {**base, "method": "router_norm", "score": score}, 4, args), ctx)
            s = summary(result)
            frac = result["bits"]["expert_params"] / result["bits"]["quantized_params"]
            rows.append({**setting, "method": f"router_norm ({score})", **s,
                         "alloc_s": result["diagnostics"]["allocation"]["seconds"]})
        rand = [summary(run_recipe(recipe(args.model, {**base, "method": "random", "seed": s}, 4, args), ctx)[0])
                for s in range(args.random_seeds)]
        row = {**setting, "method": f"random ({args.random_seeds} seeds, mean ± std)", "all_bits": rand[0]["all_bits"],
               "expert_bits": rand[0]["expert_bits"]}
        for k in KEYS:
            row[k] = statistics.mean(r[k] for r in rand)
            row[k + "_std"] = statistics.stdev(r[k] for r in rand)
            row[k + "_all"] = [r[k] for r in rand]
        rows.append(row)
        target = rows[-1]["all_bits"]
        b, o = min(itertools.product((2, 3, 4, 8), (2, 3, 4, 8)),
                   key=lambda p: (abs(frac * p[0] + (1 - frac) * p[1] - target), p))
        u = run_uniform(b, o)
        rows.append({**setting, "method": f"uniform W{b} (other W{o})", **u,
                     "equal_bits": abs(u["all_bits"] - target) < 0.05})
    print(f"# Expert-wise mixed precision on {args.model} (GPTQ per channel); expert share of quantized "
          f"weights {frac:.4f}")
    print_table(rows, [("avg expert bits", "avg", ".2f"), ("tiers", "tiers", ""), ("other bits", "other", ""),
                       ("method", "method", ""), ("all-weights bits", "all_bits", ".3f"),
                       ("expert bits", "expert_bits", ".3f"), ("avg acc", "avg_accuracy", ".3f"),
                       ("± std", "avg_accuracy_std", ".3f"), ("rare acc", "rare_accuracy", ".3f"),
                       ("KL", "kl", ".4f"), ("± std", "kl_std", ".4f"),
                       ("top-k agree", "mean_topk_agreement", ".3f"), ("equal bits", "equal_bits", ""),
                       ("alloc s", "alloc_s", ".4f")])
    write_json(args.out, {"model": args.model, "expert_share": frac, "rows": rows})


if __name__ == "__main__":
    main()
