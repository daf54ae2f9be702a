"""testbed-outliers report: per-layer peak ratios (max channel max|x| / median channel max|x|) at the
attention and MoE inputs with norm weights folded, next to testbed-mixtral; and KL of RTN W4A16,
RTN W4A4, QuaRot W4A4 and DuQuant W4A4 over seeds (calibration and evaluation windows per seed).

    python benchmarks/outliers_testbed.py --seeds 0,1,2 --out benchmarks/results/outliers-testbed.json
"""

from __future__ import annotations

import statistics

import torch
from common import context, run_recipe, standard_args, write_json

from moeq.quant_core.adapters.model import MoEModel
from moeq.quant_core.algorithms.rotation import fold_norms
from moeq.quant_core.calibration.data import token_windows
from moeq.quant_core.model_io import load_model, resolve_model
from moeq.quant_core.zoo.outliers import channel_peaks
from moeq.contract.presets import PRESETS

W4 = {"bits": 4, "group_size": None, "symmetric": False}
ROWS = {
    "RTN W4A16": ({}, ["rtn"]),
    "RTN W4A4": ({"bits": 4}, ["rtn"]),
    "QuaRot W4A4": ({"bits": 4}, [{"name": "rotation"}, {"name": "rtn"}]),
    "DuQuant W4A4": ({"bits": 4}, PRESETS["duquant"]["techniques"]),
}


@torch.no_grad()
def peak_ratios(name: str, ctx) -> dict[str, float]:
    model, tok = load_model(resolve_model(name, ctx), ctx)
    moe = MoEModel(model)
    fold_norms(moe)
    peaks = channel_peaks(model, moe, token_windows("auto", "heldout", tok, 8, 256, 0))
    return {k: float(p.max() / p.median()) for k, p in peaks.items()}


def main() -> None:
    ap = standard_args(__doc__, model="testbed-outliers")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    ctx = context()
    seeds = [int(s) for s in args.seeds.split(",")]
    ratios = {m: peak_ratios(m, ctx) for m in ("testbed-mixtral", args.model)}
    print("| model | " + " | ".join(ratios[args.model]) + " |")
    print("|---|" + "---|" * len(ratios[args.model]))
    for m, r in ratios.items():
        print(f"| {m} | " + " | ".join(f"{v:.1f}" for v in r.values()) + " |")
    runs, table = [], []
    for row, (acts, techniques) in ROWS.items():
        kls = []
        for seed in seeds:
            recipe = {"model": args.model, "seed": seed, "weights": W4, "techniques": techniques,
                      "calibration": {"samples": args.samples, "seq_len": 256},
                      "eval": {"tasks": ["testbed"], "limit": args.limit, "ppl_windows": 16, "seq_len": 256}}
            if acts:
                recipe["activations"] = acts
            result, seconds = run_recipe(recipe, ctx)
            kl, acc = result["metrics"]["kl"], result["metrics"]["avg_accuracy"]
            runs.append({"row": row, "seed": seed, "kl": kl, "avg_accuracy": acc, "seconds": seconds})
            kls.append(kl)
            print(f"{row} seed {seed}: KL {kl:.4f} acc {acc:.3f} ({seconds:.0f} s)", flush=True)
        table.append({"row": row, "kl_mean": statistics.fmean(kls), "kl_half_range": (max(kls) - min(kls)) / 2,
                      "accuracy_mean": statistics.fmean(r["avg_accuracy"] for r in runs if r["row"] == row)})
    print(f"\n| {args.model} | KL (mean ± half-range, seeds {seeds}) | avg acc |\n|---|---|---|")
    for t in table:
        print(f"| {t['row']} | {t['kl_mean']:.4f} ± {t['kl_half_range']:.4f} | {t['accuracy_mean']:.3f} |")
    write_json(args.out, {"model": args.model, "seeds": seeds, "peak_ratios": ratios, "runs": runs, "table": table})


if __name__ == "__main__":
    main()
