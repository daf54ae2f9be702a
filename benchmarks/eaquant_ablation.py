"""EAQuant ablation on the DuQuant base (docs/methods.md): baseline = SmoothQuant-style smoothing
(α 0.6) → DuQuant transforms → RTN with clip search, per-token activations, router W8A8 plain RTN;
then + expert-aware smoothing aggregation (with down_proj), + router alignment (paper's loss), +
calibration balance (r = 2), and all three — at each weight/activation setting, over seeds (the seed
changes the calibration sample and the evaluation windows), reported as mean ± half-range.

    python benchmarks/eaquant_ablation.py --model testbed-outliers --settings W4A4,W3A4,W2A4 \
        --seeds 0,1,2 --out benchmarks/results/eaquant-outliers.json

Long runs can be split (e.g. one process per --settings, each with its own --out and --resume) and
tabulated afterwards with `--table-only --merge part1.json part2.json ... --out all.json`.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from common import context, standard_args, headline, run_recipe, write_json

BASE_SMOOTH = {"name": "smooth", "aggregate": "all", "alpha": 0.6}
EXPERT_SMOOTH = {"name": "smooth", "aggregate": "expert", "alpha": 0.6, "down_proj": True}
DUQUANT = {"name": "duquant"}
QUAROT = {"name": "rotation"}
VARIANTS = {
    "DuQuant baseline": {"pre": [BASE_SMOOTH, DUQUANT], "router": "quantize", "balance": None},
    "+aggregation": {"pre": [EXPERT_SMOOTH, DUQUANT], "router": "quantize", "balance": None},
    "+alignment": {"pre": [BASE_SMOOTH, DUQUANT], "router": "align", "balance": None},
    "+balance": {"pre": [BASE_SMOOTH, DUQUANT], "router": "quantize", "balance": {"r": 2.0}},
    "all three (EAQuant)": {"pre": [EXPERT_SMOOTH, DUQUANT], "router": "align", "balance": {"r": 2.0}},
    # the order question (issue 17): the previous base rotated the residual stream first (QuaRot,
    # norm weights folded) and smoothed the rotated channels afterwards
    "QuaRot→smooth (old base)": {"pre": [QUAROT, BASE_SMOOTH], "router": "quantize", "balance": None},
    "QuaRot→smooth +aggregation": {"pre": [QUAROT, EXPERT_SMOOTH], "router": "quantize", "balance": None},
}


def recipe(model: str, wbits: int, abits: int, v: dict, samples: int, limit: int, seed: int) -> dict:
    return {"model": model, "seed": seed, "weights": {"bits": wbits, "group_size": None, "symmetric": False},
            "activations": {"bits": abits},
            "router": {"mode": v["router"], "bits": 8, "act_bits": 8},
            "calibration": {"samples": samples, "seq_len": 256, "balance": v["balance"]},
            "techniques": [*v["pre"], {"name": "rtn", "clip_search": True}],
            "eval": {"tasks": ["testbed"], "limit": limit, "ppl_windows": 16, "seq_len": 256}}


def summarize(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "half_range": (max(values) - min(values)) / 2, "values": values}


def main() -> None:
    ap = standard_args(__doc__)
    ap.add_argument("--settings", default="W4A4,W3A4,W2A4")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--resume", action="store_true", help="keep the rows already in --out")
    ap.add_argument("--merge", nargs="*", type=Path, default=[],
                    help="JSON files of partial runs (e.g. one per setting) to take rows from")
    ap.add_argument("--table-only", action="store_true", help="run nothing: tabulate the rows found")
    args = ap.parse_args()
    ctx = context()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs, table = [], []
    done = {}
    if args.resume and args.out is not None and args.out.is_file():  # rows of an interrupted run
        done = {(r["setting"], r["variant"], r["seed"]): r for r in json.loads(args.out.read_text())["runs"]}
    for path in args.merge:
        done.update({(r["setting"], r["variant"], r["seed"]): r for r in json.loads(path.read_text())["runs"]})
    for setting in args.settings.split(","):
        wbits, abits = (int(x) for x in setting[1:].split("A"))
        for name in args.variants.split(","):
            per_seed = []
            for seed in seeds:
                if (setting, name, seed) in done:
                    runs.append(done[(setting, name, seed)])
                    per_seed.append(done[(setting, name, seed)])
                    continue
                if args.table_only:
                    continue
                result, seconds = run_recipe(recipe(args.model, wbits, abits, VARIANTS[name], args.samples,
                                                    args.limit, seed), ctx)
                row = {"setting": setting, "variant": name, "seed": seed, **headline(result), "seconds": seconds}
                runs.append(row)
                per_seed.append(row)
                print(f"{setting} {name} seed {seed}: KL {row['kl']:.4f} acc {row['avg_accuracy']:.3f} "
                      f"top-k {row['mean_topk_agreement']:.3f} ({seconds:.0f} s)", flush=True)
                write_json(args.out, {"model": args.model, "seeds": seeds, "samples": args.samples,
                                      "limit": args.limit, "runs": runs, "partial": True})
            if not per_seed:
                continue
            table.append({"setting": setting, "variant": name, "seeds": [r["seed"] for r in per_seed],
                          **{k: summarize([r[k] for r in per_seed]) for k in ("kl", "avg_accuracy",
                                                                              "mean_topk_agreement")}})
    print(f"\n# EAQuant ablation on {args.model} (seeds {seeds}; mean ± half-range)")
    fp_acc = next((r["fp_avg_accuracy"] for r in runs if r.get("fp_avg_accuracy") is not None), None)
    print(f"FP avg accuracy {fp_acc}")
    print("| setting | variant | seeds | KL | avg acc | top-k agree |")
    print("|---|---|---|---|---|---|")
    for t in table:
        cell = lambda k, f: f"{t[k]['mean']:{f}} ± {t[k]['half_range']:{f}}"  # noqa: E731
        seeds_cell = ",".join(map(str, t["seeds"]))
        print(f"| {t['setting']} | {t['variant']} | {seeds_cell} | {cell('kl', '.4f')} | "
              f"{cell('avg_accuracy', '.3f')} | {cell('mean_topk_agreement', '.3f')} |")
    write_json(args.out, {"model": args.model, "seeds": seeds, "samples": args.samples, "limit": args.limit,
                          "runs": runs, "table": table})


if __name__ == "__main__":
    main()
