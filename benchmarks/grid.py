"""RTN and GPTQ (act-order off / on) at W4/W3/W2 per channel on the full 2^b symmetric grid: accuracy,
KL, routing agreement, all-weights bits and quantization time.

    OMP_NUM_THREADS=1 python benchmarks/grid.py --model testbed-mixtral --out benchmarks/results/grid-mixtral.json
"""

from __future__ import annotations

from common import context, headline, print_table, run_recipe, standard_args, write_json

METHODS = (("rtn", {"name": "rtn"}), ("gptq (act-order off)", {"name": "gptq", "act_order": False}),
           ("gptq (act-order, default)", {"name": "gptq"}))


def main() -> None:
    ap = standard_args(__doc__)
    args = ap.parse_args()
    ctx = context()
    rows = []
    for bits in (4, 3, 2):
        for label, tech in METHODS:
            result, wall = run_recipe({"model": args.model, "weights": {"bits": bits, "group_size": None},
                                       "techniques": [tech], "calibration": {"samples": args.samples, "seq_len": 256},
                                       "eval": {"tasks": ["testbed"], "limit": args.limit, "ppl_windows": 16,
                                                "seq_len": 256}}, ctx)
            h = headline(result)
            rows.append({"bits": f"W{bits}", "method": label, **h, "quantize_s": h["timings"].get("quantize_s")})
    print(f"# Full-grid RTN/GPTQ on {args.model}, per channel, symmetric")
    print_table(rows, [("bits", "bits", ""), ("method", "method", ""), ("avg acc", "avg_accuracy", ".3f"),
                       ("KL", "kl", ".4f"), ("ppl", "perplexity", ".4f"), ("top-k agree", "mean_topk_agreement", ".3f"),
                       ("all-weights bits", "avg_weight_bits", ".3f"), ("quantize s", "quantize_s", ".1f")])
    write_json(args.out, {"model": args.model, "rows": rows})


if __name__ == "__main__":
    main()
