"""Kernel benchmark: one MoE layer (Mixtral-8x7B, Qwen3-30B-A3B shapes) at 1/16/128/2048 tokens.

Timed, each with the L2 cache flushed before every call (a 512 MB write outside the timed region):
- bf16 `torch._grouped_mm` (routing sort, gate_up, SiLU·up, down, weighted combine: the fast torch path),
- the fused mixed-bit Triton kernel (routing on the device, one launch per projection) at W2/W3/W4/W8 and a
  mixed 2/3/4 allocation,
- torch's int4 path (`torch._weight_int4pack_mm`, one call per active expert, routing precomputed on the host,
  which favours it) for W4 where the build has it,
against the HBM bound (bytes of packed weights + scales/zeros of the active experts / peak bandwidth).
Prints a markdown table and writes JSON (device, date, torch and triton versions).

    python benchmarks/moe_kernels.py --out benchmarks/results/kernels-h100.json    # on a CUDA GPU
    python benchmarks/moe_kernels.py --small                                       # CPU smoke run: torch path only
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
from moeq.kernels.configs import shape_class
from moeq.kernels.moe_gemm import fused_moe, weight_bytes_touched
from moeq.kernels.moe_layout import MixedBitExperts
from moeq.quant_core.functional.affine import compute_params, quantize

SHAPES = {"mixtral-8x7b": (4096, 14336, 8, 2), "qwen3-30b-a3b": (2048, 768, 128, 8)}
SMALL = {"small-8e": (256, 512, 8, 2), "small-64e": (256, 128, 64, 8)}
TOKENS = (1, 16, 128, 2048)
BIT_CONFIGS = {"W4": [4], "W3": [3], "W2": [2], "W8": [8], "mixed 2/3/4": [2, 3, 4]}
GROUP = 128
FLUSH_BYTES = 512 * 2 ** 20


class Timer:
    """Median seconds per call with the L2 flushed before each call (CUDA events around the call only)."""

    def __init__(self, device: torch.device, repeats: int) -> None:
        self.device, self.repeats = device, repeats
        self.flush = torch.empty(FLUSH_BYTES // 4, dtype=torch.int32, device=device) if device.type == "cuda" else None

    def __call__(self, fn) -> float:
        for _ in range(3):
            fn()
        times = []
        for _ in range(self.repeats):
            if self.flush is not None:
                self.flush.zero_()
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end) / 1000)
            else:
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
        return statistics.median(times)


def quantized(w: torch.Tensor, bits: list[int]) -> MixedBitExperts:
    n = w.shape[0]
    per_expert = torch.tensor([bits[e % len(bits)] for e in range(n)], device=w.device)
    p = compute_params(w, per_expert, GROUP, False)
    return MixedBitExperts.from_codes(quantize(w, p), p.scale, p.zero, per_expert.cpu(), GROUP)


def grouped_mm_moe(x, idx, wts, w_gu_t, w_d_t):
    """bf16 MoE layer with torch._grouped_mm; w_gu_t [E, d, 2I], w_d_t [E, I, d] (K-major, as _grouped_mm wants)."""
    t, k = idx.shape
    flat = idx.reshape(-1)
    order = torch.argsort(flat, stable=True)
    counts = torch.zeros(w_gu_t.shape[0], dtype=torch.int32, device=x.device).scatter_add_(
        0, flat, torch.ones_like(flat, dtype=torch.int32))
    offs = counts.cumsum(0, dtype=torch.int32)
    xs = x[order // k]
    h = torch._grouped_mm(xs, w_gu_t, offs=offs)
    inter = w_d_t.shape[1]
    y = torch._grouped_mm(F.silu(h[:, :inter]) * h[:, inter:], w_d_t, offs=offs)
    y = y * wts.reshape(-1)[order, None]
    out = torch.zeros(t * k, x.shape[1], dtype=y.dtype, device=x.device)
    out[order] = y
    return out.view(t, k, -1).sum(1)


def int4_moe(x, idx, wts, packs, inter):
    """torch's int4 path, one expert at a time (routing taken on the host beforehand)."""
    out = torch.zeros_like(x)
    for e, (tok, slot, gu, gu_sz, dn, dn_sz) in packs(idx).items():
        h = torch._weight_int4pack_mm(x[tok], gu, GROUP, gu_sz)
        y = torch._weight_int4pack_mm(F.silu(h[:, :inter]) * h[:, inter:], dn, GROUP, dn_sz)
        out.index_add_(0, tok, y * wts[tok, slot, None])
    return out


def int4_packs(w_gu, w_d):
    """Per-expert int4 packs for torch._weight_int4pack_mm (None when this build lacks it)."""
    def one(w):
        p = compute_params(w.float(), 4, GROUP, False)
        q = quantize(w.float(), p).to(torch.int32)
        packed = torch._convert_weight_to_int4pack((q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8), 8)
        zero_point = (8 - p.zero) * p.scale  # the op's zero convention: w = (q − 8)·s + zp
        sz = torch.stack([p.scale.T, zero_point.T], -1).contiguous().to(torch.bfloat16)
        return packed, sz
    try:
        gu = [one(w_gu[e]) for e in range(w_gu.shape[0])]
        dn = [one(w_d[e]) for e in range(w_d.shape[0])]
    except (RuntimeError, AttributeError) as exc:  # no int4 kernel for this device / build
        print(f"int4 path unavailable: {str(exc).splitlines()[0]}", flush=True)
        return None

    def packs(idx):
        table = {}
        for e in torch.unique(idx).tolist():
            tok, slot = torch.nonzero(idx == e, as_tuple=True)
            table[e] = (tok, slot, gu[e][0], gu[e][1], dn[e][0], dn[e][1])
        return table
    return packs


def bench_shape(name: str, dims: tuple, device: torch.device, hbm_tbps: float, use_kernel: bool,
                timer: Timer) -> list[dict]:
    d, inter, n, k = dims
    g = torch.Generator(device=device).manual_seed(0)
    w_gu = (torch.randn(n, 2 * inter, d, device=device, generator=g) * 0.02).to(torch.bfloat16)
    w_d = (torch.randn(n, d, inter, device=device, generator=g) * 0.02).to(torch.bfloat16)
    w_gu_t, w_d_t = w_gu.transpose(1, 2).contiguous(), w_d.transpose(1, 2).contiguous()
    packed = {label: (quantized(w_gu.float(), b).to(device), quantized(w_d.float(), b).to(device))
              for label, b in BIT_CONFIGS.items()} if use_kernel else {}
    int4 = int4_packs(w_gu, w_d) if use_kernel else None
    rows = []
    for t in TOKENS:
        x = torch.randn(t, d, device=device, generator=g).to(torch.bfloat16)
        logits = torch.randn(t, n, device=device, generator=g)
        wts, idx = logits.softmax(-1).topk(k, dim=-1)
        wts = wts.to(torch.bfloat16)
        active = torch.unique(idx)
        bf16_bytes = active.numel() * (w_gu[0].numel() + w_d[0].numel()) * 2
        row = {"shape": name, "shape_class": shape_class(t, d, inter, n, k), "tokens": t,
               "active_experts": int(active.numel()),
               "bf16_ms": 1e3 * timer(lambda: grouped_mm_moe(x, idx, wts, w_gu_t, w_d_t)),
               "bf16_bound_ms": 1e3 * bf16_bytes / (hbm_tbps * 1e12)}
        if int4 is not None:
            try:
                row["int4_ms"] = 1e3 * timer(lambda: int4_moe(x, idx, wts, int4, inter))
            except RuntimeError as exc:
                print(f"int4 path failed: {str(exc).splitlines()[0]}", flush=True)
                int4 = None
        for label, (gu, dn) in packed.items():
            nbytes = weight_bytes_touched(gu, active) + weight_bytes_touched(dn, active)
            ms = 1e3 * timer(lambda: fused_moe(x, idx, wts, gu, dn, backend="triton"))
            bound = 1e3 * nbytes / (hbm_tbps * 1e12)
            row[f"{label}_ms"], row[f"{label}_bound_ms"] = ms, bound
            row[f"{label}_speedup"], row[f"{label}_of_bound"] = row["bf16_ms"] / ms, bound / ms
            row[f"{label}_bytes_vs_bf16"] = (gu.nbytes() + dn.nbytes()) / ((w_gu.numel() + w_d.numel()) * 2)
        rows.append(row)
        print(json.dumps({k2: (round(v, 4) if isinstance(v, float) else v) for k2, v in row.items()}), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="small shapes; on CPU only the torch path is timed")
    ap.add_argument("--hbm-tbps", type=float, default=3.35, help="peak memory bandwidth (H100 SXM 3.35, H200 4.8)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    use_kernel = device.type == "cuda"
    shapes = SMALL if args.small or device.type == "cpu" else SHAPES
    timer = Timer(device, args.repeats)
    rows = []
    for name, dims in shapes.items():
        rows += bench_shape(name, dims, device, args.hbm_tbps, use_kernel, timer)
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "cpu (Triton kernels not timed)"
    flushed = "L2 flushed before each call" if device.type == "cuda" else "no flush (CPU)"
    print(f"\n# MoE layer, {gpu}, {date.today()}, {flushed}, bound = weight bytes / {args.hbm_tbps} TB/s")
    labels = [label for label in BIT_CONFIGS if f"{label}_ms" in rows[0]]
    int4 = all("int4_ms" in r for r in rows)
    print("| shape | tokens | bf16 _grouped_mm ms |" + (" int4 ms |" if int4 else "")
          + "".join(f" {lb} ms (× bf16, % bound) |" for lb in labels))
    print("|---|---|---|" + ("---|" if int4 else "") + "---|" * len(labels))
    for r in rows:
        cells = [f"{r[f'{lb}_ms']:.3f} ({r[f'{lb}_speedup']:.2f}×, {100 * r[f'{lb}_of_bound']:.0f}%)" for lb in labels]
        print(f"| {r['shape']} | {r['tokens']} | {r['bf16_ms']:.3f} |" + (f" {r['int4_ms']:.3f} |" if int4 else "")
              + "".join(f" {c} |" for c in cells))
    if args.out:
        import triton

        args.out.write_text(json.dumps({"device": gpu, "date": str(date.today()), "hbm_tbps": args.hbm_tbps,
                                        "torch": torch.__version__, "triton": triton.__version__,
                                        "l2_flush_bytes": FLUSH_BYTES, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
