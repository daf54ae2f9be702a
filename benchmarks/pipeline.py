"""Pipeline benchmark: per-stage wall time and peak memory for the testbed and a 64-expert model,
and batched per-expert GPTQ against the one-expert-at-a-time loop (same results, speed ratio).

    python benchmarks/pipeline.py --out benchmarks/pipeline.json [--device cuda]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from common import context, fmt, headline, run_recipe, write_json

from moeq.quant_core.functional.gptq import gptq_quantize, hessian


def build_wide_model(zoo: Path) -> str:
    """A random-init Qwen3-MoE with 64 experts top-8 (structure of the real one, small dims)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from moeq.quant_core.zoo.tokenizer import VOCAB, build_tokenizer

    path = zoo / "bench-qwen3-64e"
    if not (path / "config.json").is_file():
        cfg = AutoConfig.for_model("qwen3_moe", vocab_size=len(VOCAB), hidden_size=256, intermediate_size=512,
                                   moe_intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                                   num_key_value_heads=2, head_dim=64, num_experts=64, num_experts_per_tok=8,
                                   max_position_embeddings=512, tie_word_embeddings=False)
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(cfg).save_pretrained(path)
        build_tokenizer().save_pretrained(path)
    return str(path)


def gptq_batched_vs_loop(n: int, rows: int, cols: int, device: str) -> dict:
    g = torch.Generator().manual_seed(0)
    W = torch.randn(n, rows, cols, generator=g).to(device)
    X = torch.randn(n, 256, cols, generator=g).to(device)
    H = torch.stack([hessian(X[i]) for i in range(n)])
    t = time.perf_counter()
    batched = gptq_quantize(W, H, 4, 32, True).weight
    t_batched = time.perf_counter() - t
    t = time.perf_counter()
    loop = torch.stack([gptq_quantize(W[i], H[i], 4, 32, True).weight for i in range(n)])
    t_loop = time.perf_counter() - t
    return {"experts": n, "shape": [rows, cols], "batched_s": t_batched, "loop_s": t_loop,
            "speedup": t_loop / t_batched, "max_abs_diff": float((batched - loop).abs().max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    ctx = context(args.device)
    models = ["testbed-mixtral", build_wide_model(ctx.zoo_dir)]
    rows = []
    for model in models:
        for quantizer in ("rtn", "gptq"):
            recipe = {"model": model, "weights": {"bits": 4, "group_size": 32}, "techniques": [quantizer],
                      "calibration": {"samples": 64, "seq_len": 256},
                      "eval": {"tasks": ["testbed"], "limit": 20, "ppl_windows": 8, "seq_len": 256}}
            result, total = run_recipe(recipe, ctx)
            h = headline(result)
            rows.append({"model": Path(model).name, "quantizer": quantizer, "total_s": total,
                         **{k: v for k, v in result["timings"].items()}, "peak_memory_mb": result["peak_memory_mb"],
                         "peak_memory_kind": result["peak_memory_kind"], "kl": h["kl"],
                         "device": result["environment"]["device"]})
    print("| model | quantizer | load s | FP eval s | calibrate s | quantize s | evaluate s | total s | peak MB | KL |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['quantizer']} | {fmt(r.get('load_s'), '.1f')} | {fmt(r.get('fp_evaluate_s'), '.1f')} | "
              f"{fmt(r.get('calibrate_s'), '.1f')} | {fmt(r.get('quantize_s'), '.1f')} | {fmt(r.get('evaluate_s'), '.1f')} | "
              f"{r['total_s']:.1f} | {r['peak_memory_mb']:.0f} | {fmt(r['kl'])} |")
    device = "cuda" if ctx.device != "cpu" and torch.cuda.is_available() else "cpu"
    gptq = [gptq_batched_vs_loop(n, 256, 128, device) for n in (8, 64)]
    print("\n| experts | batched GPTQ s | per-expert loop s | speed-up | max |diff| |\n|---|---|---|---|---|")
    for g in gptq:
        print(f"| {g['experts']} | {g['batched_s']:.3f} | {g['loop_s']:.3f} | {g['speedup']:.2f}x | {g['max_abs_diff']:.2e} |")
    write_json(args.out, {"stages": rows, "gptq_batched_vs_loop": gptq})


if __name__ == "__main__":
    main()
