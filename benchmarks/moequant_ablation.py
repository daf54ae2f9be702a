"""MoEQuant ablation on the trained testbeds: GPTQ, +rotation, +EBSS, +AGQ, all (MoEQuant++), at W4
and W3 — accuracy, KL, routing agreement, and time spent sampling and quantizing, over several
recipe seeds (calibration windows / EBSS start tokens; mean ± std). Also EBSS timing at w=4, L=128,
32 sequences.

    OMP_NUM_THREADS=1 python benchmarks/moequant_ablation.py --model testbed-mixtral --seeds 3 --out benchmarks/moequant.json
"""

from __future__ import annotations

import statistics
import time

from common import context, standard_args, headline, print_table, run_recipe, write_json

VARIANTS = {
    "GPTQ": ([{"name": "gptq"}], "uniform"),
    "+rotation": ([{"name": "rotation"}, {"name": "gptq"}], "uniform"),
    "+EBSS": ([{"name": "gptq"}], "ebss"),
    "+AGQ": ([{"name": "gptq", "affinity": True}], "uniform"),
    "all (MoEQuant++)": ([{"name": "rotation"}, {"name": "gptq", "affinity": True}], "ebss"),
}


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


def main() -> None:
    ap = standard_args(__doc__)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--bits", default="4,3")
    args = ap.parse_args()
    ctx = context()
    rows = []
    for bits in (int(b) for b in args.bits.split(",")):
        for name, (techniques, sampler) in VARIANTS.items():
            runs = []
            for seed in range(args.seeds):
                recipe = {"model": args.model, "weights": {"bits": bits, "group_size": None}, "techniques": techniques,
                          "calibration": {"samples": args.samples, "seq_len": 256, "sampler": sampler,
                                          "ebss": {"width": 4}},
                          "eval": {"tasks": ["testbed"], "limit": args.limit, "ppl_windows": 16, "seq_len": 256},
                          "seed": seed}
                result, seconds = run_recipe(recipe, ctx)
                runs.append({**headline(result), "sample_s": result["timings"].get("calibrate_s"),
                             "quantize_s": result["timings"].get("quantize_s"), "seconds": seconds})
            row = {"bits": f"W{bits}", "variant": name, "seeds": args.seeds, "runs": runs}
            for k in ("avg_accuracy", "kl", "mean_topk_agreement", "quantize_s", "sample_s"):
                vals = [r[k] for r in runs]
                row[k] = statistics.mean(vals)
                row[k + "_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
            rows.append(row)
    print(f"# MoEQuant ablation on {args.model} (mean ± std over {args.seeds} seeds)")
    print_table(rows, [("bits", "bits", ""), ("variant", "variant", ""), ("avg acc", "avg_accuracy", ".3f"),
                       ("± std", "avg_accuracy_std", ".3f"), ("KL", "kl", ".4f"), ("± std", "kl_std", ".4f"),
                       ("top-k agree", "mean_topk_agreement", ".3f"), ("sample s", "sample_s", ".1f"),
                       ("quantize s", "quantize_s", ".1f")])
    timing = ebss_timing(args.model, ctx)
    import torch

    device = "cuda" if torch.cuda.is_available() and ctx.device != "cpu" else "cpu"
    print(f"\nEBSS w=4, L=128, 32 sequences: {timing['seconds']:.1f} s on {device}")
    write_json(args.out, {"model": args.model, "ablation": rows, "ebss_timing": timing})


if __name__ == "__main__":
    main()
