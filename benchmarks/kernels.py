"""Kernel benchmark: one MoE layer (Mixtral-8x7B, Qwen3-30B-A3B shapes) at 1/16/128/2048 tokens —
bf16 torch reference vs the fused mixed-bit Triton kernel per bit width, against the HBM bound
(bytes of weights touched / peak bandwidth). Prints a markdown table and writes JSON.

    python benchmarks/kernels.py --out benchmarks/kernels.json            # on a CUDA GPU
    python benchmarks/kernels.py --small                                  # CPU: torch paths only
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F

import common  # noqa: F401  (sets up sys.path)
from kernels.moe_gemm import MixedBitExperts, fused_moe, weight_bytes_touched
from quant_core.functional.affine import compute_params, quantize

SHAPES = {"mixtral-8x7b": (4096, 14336, 8, 2), "qwen3-30b-a3b": (2048, 768, 128, 8)}
SMALL = {"small-8e": (256, 512, 8, 2), "small-64e": (256, 128, 64, 8)}
TOKENS = (1, 16, 128, 2048)
BIT_CONFIGS = {"W4": [4], "W3": [3], "W2": [2], "W8": [8], "mixed 2/3/4": [2, 3, 4]}


def _timeit(fn, device: torch.device, repeats: int = 20) -> float:
    """Median seconds per call (CUDA events on GPU)."""
    for _ in range(3):
        fn()
    if device.type == "cuda":
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        return statistics.median(times)
    times = []
    for _ in range(max(3, repeats // 4)):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _quantized(w: torch.Tensor, bits: list[int], group: int) -> MixedBitExperts:
    n = w.shape[0]
    per_expert = torch.tensor([bits[e % len(bits)] for e in range(n)], device=w.device)
    p = compute_params(w, per_expert, group, False)
    return MixedBitExperts.from_codes(quantize(w, p), p.scale.half(), p.zero.half(), per_expert.cpu(), group)


def bf16_reference(x, idx, wts, w_gu, w_d):
    """Per-expert bf16 loop (the eager transformers path)."""
    out = torch.zeros_like(x)
    inter = w_d.shape[2]
    for e in torch.unique(idx).tolist():
        tok, slot = torch.nonzero(idx == e, as_tuple=True)
        h = x[tok] @ w_gu[e].T
        y = (F.silu(h[:, :inter]) * h[:, inter:]) @ w_d[e].T
        out.index_add_(0, tok, (y * wts[tok, slot, None]).to(out.dtype))
    return out


def bench_shape(name: str, dims: tuple, device: torch.device, hbm_tbps: float, use_kernel: bool) -> list[dict]:
    d, inter, n, k = dims
    g = torch.Generator(device=device).manual_seed(0)
    w_gu = (torch.randn(n, 2 * inter, d, device=device, generator=g) * 0.02).to(torch.bfloat16)
    w_d = (torch.randn(n, d, inter, device=device, generator=g) * 0.02).to(torch.bfloat16)
    quantized = {label: (_quantized(w_gu.float(), b, 128), _quantized(w_d.float(), b, 128))
                 for label, b in BIT_CONFIGS.items()} if use_kernel else {}
    rows = []
    for t in TOKENS:
        x = torch.randn(t, d, device=device, generator=g).to(torch.bfloat16)
        logits = torch.randn(t, n, device=device, generator=g)
        wts, idx = logits.softmax(-1).topk(k, dim=-1)
        wts = wts.to(torch.bfloat16)
        active = torch.unique(idx)
        bf16_bytes = active.numel() * (w_gu[0].numel() + w_d[0].numel()) * 2
        row = {"shape": name, "tokens": t, "active_experts": int(active.numel()),
               "bf16_ms": 1e3 * _timeit(lambda: bf16_reference(x, idx, wts, w_gu, w_d), device),
               "bf16_bound_ms": 1e3 * bf16_bytes / (hbm_tbps * 1e12)}
        for label, (gu, dn) in quantized.items():
            nbytes = weight_bytes_touched(gu, active) + weight_bytes_touched(dn, active)
            ms = 1e3 * _timeit(lambda: fused_moe(x, idx, wts, gu, dn, backend="triton"), device)
            bound = 1e3 * nbytes / (hbm_tbps * 1e12)
            row[f"{label}_ms"], row[f"{label}_bound_ms"] = ms, bound
            row[f"{label}_speedup"], row[f"{label}_of_bound"] = row["bf16_ms"] / ms, bound / ms
        rows.append(row)
        print(json.dumps({k2: (round(v, 4) if isinstance(v, float) else v) for k2, v in row.items()}), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="small shapes; on CPU only the torch paths are timed")
    ap.add_argument("--hbm-tbps", type=float, default=3.04, help="peak memory bandwidth (H100 measured: 3.04)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    use_kernel = device.type == "cuda"
    shapes = SMALL if args.small or device.type == "cpu" else SHAPES
    rows = []
    for name, dims in shapes.items():
        rows += bench_shape(name, dims, device, args.hbm_tbps, use_kernel)
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "cpu (Triton kernels not timed)"
    print(f"\n# MoE layer, {gpu}, {date.today()}, bound = weight bytes / {args.hbm_tbps} TB/s")
    labels = [label for label in BIT_CONFIGS if f"{label}_ms" in rows[0]]
    print("| shape | tokens | bf16 ms | " + " | ".join(f"{lb} ms (x bf16, % bound)" for lb in labels) + " |")
    print("|---|---|---|" + "---|" * len(labels))
    for r in rows:
        cells = [f"{r[f'{lb}_ms']:.3f} ({r[f'{lb}_speedup']:.2f}x, {100 * r[f'{lb}_of_bound']:.0f}%)" for lb in labels]
        print(f"| {r['shape']} | {r['tokens']} | {r['bf16_ms']:.3f} | " + " | ".join(cells) + " |")
    if args.out:
        args.out.write_text(json.dumps({"device": gpu, "date": str(date.today()), "hbm_tbps": args.hbm_tbps,
                                        "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
