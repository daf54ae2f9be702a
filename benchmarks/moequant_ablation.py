"""MoEQuant ablation on the trained testbeds: GPTQ, +rotation, +EBSS, +AGQ, all (MoEQuant++), at W4
and W3 — accuracy, KL, routing agreement, and time spent sampling and quantizing. Also EBSS timing
at w=4, L=128, 32 sequences.

    python benchmarks/moequant_ablation.py --model testbed-mixtral --out benchmarks/moequant.json
"""

from __future__ import annotations

import time
from pathlib import Path

from common import context, standard_args, headline, print_table, run_recipe, write_json

VARIANTS = {
    "GPTQ": ([{"name": "gptq"}], "uniform"),
    "+rotation": ([{"name": "rotation"}, {"name": "gptq"}], "uniform"),
    "+EBSS": ([{"name": "gptq"}], "ebss"),
    "+AGQ": ([{"name": "gptq", "affinity": True}], "uniform"),
    "all (MoEQuant++)": ([{"name": "rotation"}, {"name": "gptq", "affinity": True}], "ebss"),
}


def ebss_timing(model: str, ctx) -> dict:
    from quant_core.adapters.model import MoEModel
    from quant_core.calibration.ebss import ebss_windows
    from quant_core.model_io import load_model, resolve_model
    from quant_core.recipe import CalibrationSpec, EbssSpec

    path = resolve_model(model, ctx)
    m, tok = load_model(path, ctx)
    spec = CalibrationSpec(samples=32, seq_len=128, sampler="ebss", ebss=EbssSpec(width=4, cache=False))
    t = time.perf_counter()
    windows, _ = ebss_windows(MoEModel(m), tok, spec, 0, ctx)
    return {"sequences": int(windows.shape[0]), "length": int(windows.shape[1]), "width": 4,
            "seconds": time.perf_counter() - t}


def main() -> None:
    ap = standard_args(__doc__)
    args = ap.parse_args()
    ctx = context()
    rows = []
    for bits in (4, 3):
        for name, (techniques, sampler) in VARIANTS.items():
            recipe = {"model": args.model, "weights": {"bits": bits, "group_size": None}, "techniques": techniques,
                      "calibration": {"samples": args.samples, "seq_len": 256, "sampler": sampler,
                                      "ebss": {"width": 4, "cache": False}},
                      "eval": {"tasks": ["testbed"], "limit": args.limit, "ppl_windows": 16, "seq_len": 256}}
            result, seconds = run_recipe(recipe, ctx)
            h = headline(result)
            rows.append({"bits": f"W{bits}", "variant": name, **h, "sample_s": result["timings"].get("calibrate_s"),
                         "quantize_s": result["timings"].get("quantize_s"), "seconds": seconds})
    print(f"# MoEQuant ablation on {args.model}")
    print_table(rows, [("bits", "bits", ""), ("variant", "variant", ""), ("avg acc", "avg_accuracy", ".3f"),
                       ("KL", "kl", ".4f"), ("top-k agree", "mean_topk_agreement", ".3f"),
                       ("quantize s", "quantize_s", ".1f"), ("total s", "seconds", ".0f")])
    timing = ebss_timing(args.model, ctx)
    import torch

    device = "cuda" if torch.cuda.is_available() and ctx.device != "cpu" else "cpu"
    print(f"\nEBSS w=4, L=128, 32 sequences: {timing['seconds']:.1f} s on {device}")
    write_json(args.out, {"model": args.model, "ablation": rows, "ebss_timing": timing})


if __name__ == "__main__":
    main()
