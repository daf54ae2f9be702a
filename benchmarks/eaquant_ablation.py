"""EAQuant ablation on the trained testbeds: the `eaquant` preset (as released, docs/methods.md "EAQuant")
and the preset with one part removed at a time — without expert-aware aggregation (every reader's
SmoothQuant maximum), without router alignment (the router RTN-quantized, same 8-bit asymmetric grid),
without balanced calibration — plus the `duquant` preset (the base EAQuant is built on) at equal bits
(router W8A8 RTN like EAQuant's), and the `duquant` preset with moeq's all-readers smoothing factors
(issue 26: the released q_proj / up_proj sources against every reader). Over seeds (the seed changes
the calibration sample and the evaluation windows; mean ± sample std), and per seed the paired
difference of each step from its reference (95 % bootstrap interval; moeq/contract/stats.py).

    python benchmarks/eaquant_ablation.py --model testbed-outliers --settings W4A4,W3A4,W2A4 \
        --seeds 0,1,2 --out benchmarks/results/eaquant-outliers.json

Long runs can be split (e.g. one process per --settings, each with its own --out and --resume) and
tabulated afterwards with `--table-only --merge part1.json part2.json ... --out all.json`.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from common import context, headline, run_recipe, standard_args, write_json
from preset_variants import exceeds_spread, full_recipe, outcomes, outside_noise, paired_to, preset_variant

PRESET, DUQUANT = "EAQuant preset", "DuQuant preset"
ROUTER_W8A8 = {"mode": "quantize", "bits": 8, "act_bits": 8, "symmetric": False}
VARIANTS = {
    PRESET: preset_variant("eaquant"),
    "− aggregation": preset_variant("eaquant", options={"smooth": {"aggregate": "all"}}),
    "− alignment": preset_variant("eaquant", router={"mode": "quantize"}),
    "− balance": preset_variant("eaquant", calibration={"balance": None}),
    DUQUANT: preset_variant("duquant", router=ROUTER_W8A8),
    "DuQuant preset (all readers)": preset_variant("duquant", options={"smooth": {"readers": "all"}},
                                                  router=ROUTER_W8A8),
}
# diagnostics, run only when named in --variants: the released fixed clip 0.8 against no clip / the search
EXTRA_VARIANTS = {
    "DuQuant preset (clip 1.0)": preset_variant("duquant", router=ROUTER_W8A8, weights={"clip_ratio": 1.0}),
    "DuQuant preset (clip search)": preset_variant("duquant", router=ROUTER_W8A8, weights={"clip_ratio": 1.0},
                                                   options={"rtn": {"clip_search": True, "clip_steps": 101}}),
    "DuQuant preset (router FP)": preset_variant("duquant"),
}
ALL_VARIANTS = {**VARIANTS, **EXTRA_VARIANTS}
REFERENCE = {name: (DUQUANT if name.startswith("DuQuant preset (") else PRESET) for name in ALL_VARIANTS}
METRICS = ("kl", "avg_accuracy", "mean_topk_agreement")


def recipe(model: str, wbits: int, abits: int, name: str, samples: int, limit: int, seed: int) -> dict:
    base = {"model": model, "seed": seed, "weights": {"bits": wbits}, "activations": {"bits": abits},
            "calibration": {"samples": samples, "seq_len": 256},
            "eval": {"tasks": ["testbed"], "limit": limit, "ppl_windows": 16, "seq_len": 256}}
    return full_recipe(base, ALL_VARIANTS[name])


def summarize(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def table_row(setting: str, name: str, rows: list[dict], done: dict) -> dict:
    """Mean ± std per metric; against the reference variant, the difference of means and whether it
    exceeds the spread, and in how many seeds the paired KL / accuracy difference lies outside its
    95 % interval."""
    out = {"setting": setting, "variant": name, "seeds": [r["seed"] for r in rows],
           **{k: summarize([r[k] for r in rows]) for k in METRICS}}
    if name != REFERENCE[name]:
        refs = [(done.get((setting, REFERENCE[name], r["seed"])), r) for r in rows]
        ref = [x for x, _ in refs if x]
        if len(ref) == len(rows):
            for k in ("kl", "avg_accuracy"):
                base = summarize([x[k] for x in ref])
                out[k + "_vs_reference"] = {"delta": out[k]["mean"] - base["mean"],
                                            "exceeds_spread": exceeds_spread(base["mean"], base["std"], out[k]["mean"],
                                                                              out[k]["std"])}
        diffs = [paired_to(ref["outcomes"], r["outcomes"]) for ref, r in refs if ref and "outcomes" in ref]
        out["reference"] = REFERENCE[name]
        out["paired"] = diffs
        out["kl_outside_noise"] = outside_noise(diffs, "kl")
        out["acc_outside_noise"] = outside_noise(diffs, "avg_accuracy")
    return out


def print_table(model: str, seeds: list[int], runs: list[dict], table: list[dict]) -> None:
    print(f"\n# EAQuant ablation on {model} (seeds {seeds}; mean ± std)")
    fp_acc = next((r["fp_avg_accuracy"] for r in runs if r.get("fp_avg_accuracy") is not None), None)
    print(f"FP avg accuracy {fp_acc}")
    print("| setting | variant | KL | avg acc | top-k agree | vs reference |")
    print("|---|---|---|---|---|---|")
    for t in table:
        cell = lambda k, f: f"{t[k]['mean']:{f}} ± {t[k]['std']:{f}}"  # noqa: E731
        paired = "reference"
        if "reference" in t:
            d = t.get("kl_vs_reference")
            mark = "" if d is None else f"ΔKL {d['delta']:+.4f}{' (> spread)' if d['exceeds_spread'] else ''}; "
            a = t.get("avg_accuracy_vs_reference")
            mark += "" if a is None else f"Δacc {a['delta']:+.3f}{' (> spread)' if a['exceeds_spread'] else ''}; "
            kl, acc = t["kl_outside_noise"], t["acc_outside_noise"]
            paired = (f"{mark}paired ≠ 0 (higher/lower): KL {kl['higher']}/{kl['lower']}, acc {acc['higher']}/"
                      f"{acc['lower']} of {len(t['paired'])} seeds (vs {t['reference']})")
        print(f"| {t['setting']} | {t['variant']} | {cell('kl', '.4f')} | {cell('avg_accuracy', '.3f')} | "
              f"{cell('mean_topk_agreement', '.3f')} | {paired} |")


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
    paths = [*args.merge, *([args.out] if args.resume and args.out is not None and args.out.is_file() else [])]
    done = {}
    for path in paths:  # rows of interrupted or split runs
        done.update({(r["setting"], r["variant"], r["seed"]): r for r in json.loads(path.read_text())["runs"]})
    runs, table = [], []
    for setting in args.settings.split(","):
        wbits, abits = (int(x) for x in setting[1:].split("A"))
        for name in args.variants.split(","):
            per_seed = []
            for seed in seeds:
                key = (setting, name, seed)
                if key not in done and not args.table_only:
                    result, seconds = run_recipe(recipe(args.model, wbits, abits, name, args.samples, args.limit,
                                                        seed), ctx)
                    done[key] = {"setting": setting, "variant": name, "seed": seed, **headline(result),
                                 "seconds": seconds, "outcomes": outcomes(result)}
                    r = done[key]
                    print(f"{setting} {name} seed {seed}: KL {r['kl']:.4f} acc {r['avg_accuracy']:.3f} "
                          f"top-k {r['mean_topk_agreement']:.3f} ({seconds:.0f} s)", flush=True)
                    write_json(args.out, {"model": args.model, "seeds": seeds, "samples": args.samples,
                                          "limit": args.limit, "runs": [*runs, *per_seed, r], "partial": True})
                if key in done:
                    per_seed.append(done[key])
            runs.extend(per_seed)
            if per_seed:
                table.append(table_row(setting, name, per_seed, done))
    print_table(args.model, seeds, runs, table)
    write_json(args.out, {"model": args.model, "seeds": seeds, "samples": args.samples, "limit": args.limit,
                          "runs": runs, "table": table})


if __name__ == "__main__":
    main()
