"""MoEQuant ablation on the trained testbeds: the `moequant` preset (as released: rotation, GPTQ with
affinity (AGQ) and the `--w_clip` search, no act-order, the router GPTQ-quantized at the weight bits,
EBSS calibration) and the preset with one part removed at a time — without AGQ, without EBSS (plain
corpus windows), without rotation — plus the GPTQ baseline at equal bits (the preset without all
three). Accuracy, KL, routing agreement and time spent sampling and quantizing, over recipe seeds
(calibration windows, evaluation windows, EBSS start tokens; mean ± sample std), and per seed the
paired difference of each step from the preset (95 % bootstrap interval; moeq/contract/stats.py).
Also EBSS timing at w=4, L=128, 32 sequences.

    OMP_NUM_THREADS=1 python benchmarks/moequant_ablation.py --model testbed-mixtral --samples 32 \
        --bits 4,3 --seeds 3 --resume --out benchmarks/results/moequant-mixtral.json
"""

from __future__ import annotations

import json
import statistics
import time

from common import context, headline, print_table, run_recipe, standard_args, write_json
from preset_variants import exceeds_spread, full_recipe, outcomes, outside_noise, paired_to, preset_variant

PRESET = "MoEQuant preset"
VARIANTS = {
    PRESET: preset_variant("moequant"),
    "− AGQ": preset_variant("moequant", options={"gptq": {"affinity": False}}),
    "− EBSS": preset_variant("moequant", calibration={"sampler": "uniform"}),
    "− rotation": preset_variant("moequant", drop=("rotation",)),
    "GPTQ (− rotation, EBSS, AGQ)": preset_variant("moequant", drop=("rotation",),
                                                   options={"gptq": {"affinity": False}},
                                                   calibration={"sampler": "uniform"}),
}
METRICS = ("avg_accuracy", "kl", "mean_topk_agreement", "quantize_s", "sample_s")


def ebss_timing(model: str, ctx) -> dict:
    from moeq.quant_core.adapters.model import MoEModel
    from moeq.quant_core.calibration.ebss import ebss_windows
    from moeq.quant_core.model_io import load_model, resolve_model
    from moeq.contract.recipe import CalibrationSpec, EbssSpec

    path = resolve_model(model, ctx)
    m, tok = load_model(path, ctx)
    spec = CalibrationSpec(samples=32, seq_len=128, sampler="ebss", ebss=EbssSpec(width=4, cache=False))
    t = time.perf_counter()
    windows, _ = ebss_windows(MoEModel(m), tok, spec, 0, ctx)
    return {"sequences": int(windows.shape[0]), "length": int(windows.shape[1]), "width": 4,
            "seconds": time.perf_counter() - t}


def base_recipe(model: str, bits: int, samples: int, limit: int, seed: int) -> dict:
    return {"model": model, "seed": seed, "weights": {"bits": bits},
            "calibration": {"samples": samples, "seq_len": 256, "ebss": {"width": 4}},
            "eval": {"tasks": ["testbed"], "limit": limit, "ppl_windows": 16, "seq_len": 256}}


def against_preset(rows: list[dict]) -> None:
    """Each step's difference of means from the preset at the same bits, and whether it exceeds the spread."""
    preset = {r["bits"]: r for r in rows if r["variant"] == PRESET}
    for r in rows:
        p = preset.get(r["bits"])
        if p is None or r is p:
            continue
        for k in ("kl", "avg_accuracy"):
            r[k + "_delta"] = r[k] - p[k]
            r[k + "_exceeds_spread"] = exceeds_spread(p[k], p[k + "_std"] or 0.0, r[k], r[k + "_std"] or 0.0)


def summarize(bits: int, name: str, runs: list[dict]) -> dict:
    row = {"bits": f"W{bits}", "variant": name, "seeds": [r["seed"] for r in runs]}
    for k in METRICS:
        vals = [r[k] for r in runs if r.get(k) is not None]
        row[k] = statistics.mean(vals) if vals else None
        row[k + "_std"] = statistics.stdev(vals) if len(vals) > 1 else None
    if name != PRESET:
        diffs = [r["vs_preset"] for r in runs if r.get("vs_preset")]
        kl, acc = outside_noise(diffs, "kl"), outside_noise(diffs, "avg_accuracy")
        row["kl_paired_outside_noise"] = f"{kl['higher']}/{kl['lower']}"
        row["acc_paired_outside_noise"] = f"{acc['higher']}/{acc['lower']}"
    return row


def main() -> None:
    ap = standard_args(__doc__)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--bits", default="4,3")
    ap.add_argument("--resume", action="store_true", help="keep the runs already in --out")
    ap.add_argument("--skip-timing", action="store_true", help="do not time EBSS at the end (a resumed "
                    "file's timing is kept)")
    args = ap.parse_args()
    ctx = context()
    done, previous = {}, {}
    if args.resume and args.out is not None and args.out.is_file():
        previous = json.loads(args.out.read_text())
        done = {(r["bits"], r["variant"], r["seed"]): r for r in previous["runs"]}
    runs, rows = [], []
    for bits in (int(b) for b in args.bits.split(",")):
        for name, fragment in VARIANTS.items():  # the preset first: the other steps pair with it
            per_seed = []
            for seed in range(args.seeds):
                key = (f"W{bits}", name, seed)
                if key not in done:
                    result, seconds = run_recipe(full_recipe(base_recipe(args.model, bits, args.samples,
                                                                         args.limit, seed), fragment), ctx)
                    run = {"bits": f"W{bits}", "variant": name, "seed": seed, **headline(result),
                           "sample_s": result["timings"].get("calibrate_s"),
                           "quantize_s": result["timings"].get("quantize_s"), "seconds": seconds,
                           "outcomes": outcomes(result)}
                    ref = done.get((f"W{bits}", PRESET, seed))
                    if ref is not None and name != PRESET:
                        run["vs_preset"] = paired_to(ref["outcomes"], run["outcomes"])
                    done[key] = run
                    print(f"W{bits} {name} seed {seed}: KL {run['kl']:.5f} acc {run['avg_accuracy']:.3f} "
                          f"({seconds:.0f} s)", flush=True)
                    write_json(args.out, {"model": args.model, "samples": args.samples, "limit": args.limit,
                                          "runs": [*runs, *per_seed, run], "partial": True})
                per_seed.append(done[key])
            runs.extend(per_seed)
            rows.append(summarize(bits, name, per_seed))
    against_preset(rows)
    print(f"# MoEQuant ablation on {args.model} (mean ± std over {args.seeds} seeds)")
    print_table(rows, [("bits", "bits", ""), ("variant", "variant", ""), ("avg acc", "avg_accuracy", ".3f"),
                       ("± std", "avg_accuracy_std", ".3f"), ("KL", "kl", ".5f"), ("± std", "kl_std", ".5f"),
                       ("top-k agree", "mean_topk_agreement", ".3f"), ("± std", "mean_topk_agreement_std", ".3f"),
                       ("ΔKL vs preset", "kl_delta", "+.5f"), ("> spread", "kl_exceeds_spread", ""),
                       ("Δacc vs preset", "avg_accuracy_delta", "+.3f"),
                       ("> spread", "avg_accuracy_exceeds_spread", ""),
                       ("KL paired ≠ 0 (seeds ↑/↓)", "kl_paired_outside_noise", ""),
                       ("acc paired ≠ 0 (seeds ↑/↓)", "acc_paired_outside_noise", ""),
                       ("sample s", "sample_s", ".1f"), ("quantize s", "quantize_s", ".1f")])
    payload = {"model": args.model, "samples": args.samples, "limit": args.limit, "ablation": rows, "runs": runs}
    if not args.skip_timing:
        timing = ebss_timing(args.model, ctx)
        print(f"\nEBSS w=4, L=128, 32 sequences: {timing['seconds']:.1f} s")
        payload["ebss_timing"] = timing
    elif "ebss_timing" in previous:  # the measurement of the resumed run stays
        payload["ebss_timing"] = previous["ebss_timing"]
    write_json(args.out, payload)


if __name__ == "__main__":
    main()
