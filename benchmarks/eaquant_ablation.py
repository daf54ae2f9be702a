"""EAQuant ablation on the trained testbeds: baseline (DuQuant-style: rotation + smoothing + RTN with
clip search, per-token activations), + expert-aware smoothing, + router alignment, + calibration
balance, all three; at W4A4, W3A4 and W2A4 — accuracy, KL, routing agreement. Also a sweep of the
balance ratio r ∈ {0, 1, 2, 4, 8}.

    python benchmarks/eaquant_ablation.py --model testbed-mixtral --out benchmarks/eaquant.json
"""

from __future__ import annotations

from pathlib import Path

from common import context, standard_args, headline, print_table, run_recipe, write_json

BASE_SMOOTH = {"name": "smooth", "aggregate": "all", "alpha": 0.6}
EXPERT_SMOOTH = {"name": "smooth", "aggregate": "expert", "alpha": 0.6, "down_proj": True}
VARIANTS = {
    "baseline": {"smooth": BASE_SMOOTH, "router": "quantize", "balance": None},
    "+smoothing aggregation": {"smooth": EXPERT_SMOOTH, "router": "quantize", "balance": None},
    "+router alignment": {"smooth": BASE_SMOOTH, "router": "align", "balance": None},
    "+balance": {"smooth": BASE_SMOOTH, "router": "quantize", "balance": {"r": 2.0}},
    "+smoothing aggregation +balance": {"smooth": EXPERT_SMOOTH, "router": "quantize", "balance": {"r": 2.0}},
    "all three (eaquant)": {"smooth": EXPERT_SMOOTH, "router": "align", "balance": {"r": 2.0}},
}


def recipe(model: str, wbits: int, abits: int, v: dict, samples: int, limit: int) -> dict:
    return {"model": model, "weights": {"bits": wbits, "group_size": None, "symmetric": False},
            "activations": {"bits": abits},
            "router": {"mode": v["router"], "bits": 8, "act_bits": 8},
            "calibration": {"samples": samples, "seq_len": 256, "balance": v["balance"]},
            "techniques": [{"name": "rotation"}, v["smooth"], {"name": "rtn", "clip_search": True}],
            "eval": {"tasks": ["testbed"], "limit": limit, "ppl_windows": 16, "seq_len": 256}}


def main() -> None:
    ap = standard_args(__doc__)
    args = ap.parse_args()
    ctx = context()
    rows = []
    for wbits, abits in ((4, 4), (3, 4), (2, 4)):
        for name, v in VARIANTS.items():
            result, seconds = run_recipe(recipe(args.model, wbits, abits, v, args.samples, args.limit), ctx)
            rows.append({"setting": f"W{wbits}A{abits}", "variant": name, **headline(result), "seconds": seconds,
                         "router_align": result["diagnostics"].get("router_align")})
    print(f"# EAQuant ablation on {args.model}")
    print_table(rows, [("setting", "setting", ""), ("variant", "variant", ""), ("avg acc", "avg_accuracy", ".3f"),
                       ("KL", "kl", ".4f"), ("ppl", "perplexity", ".3f"), ("top-k agree", "mean_topk_agreement", ".3f"),
                       ("s", "seconds", ".0f")])
    sweep = []
    for r in (0.0, 1.0, 2.0, 4.0, 8.0):
        v = {"smooth": EXPERT_SMOOTH, "router": "align", "balance": {"r": r}}
        result, _ = run_recipe(recipe(args.model, 3, 4, v, args.samples, args.limit), ctx)
        sweep.append({"r": r, **headline(result)})
    print("\nbalance ratio sweep (W3A4, eaquant):")
    print_table(sweep, [("r", "r", ".0f"), ("avg acc", "avg_accuracy", ".3f"), ("KL", "kl", ".4f"),
                        ("top-k agree", "mean_topk_agreement", ".3f")])
    write_json(args.out, {"model": args.model, "ablation": rows, "balance_sweep": sweep})


if __name__ == "__main__":
    main()
