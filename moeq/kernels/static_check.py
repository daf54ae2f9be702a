"""Static check of the GPU code without a GPU: compile a kernel for sm_90 on the CPU, dump its SASS with the
cuobjdump that ships inside Triton, and report for the main loop

- instructions per warp per KB of packed weights (loop-body instructions / weight KB one loop trip consumes),
- global load widths (LDG / LDGSTS .32/.64/.128) and whether the weight words can all come in 128-bit loads,
- the MMA instructions (HMMA/HGMMA with their operand types; TF32 is a failure).

    python -m moeq.kernels.static_check                 # table for every width, projection and regime
    python -m moeq.kernels.static_check --json --bits 4  # JSON rows (what tests/kernels/test_static_sass.py reads)

Compiling needs real JIT functions, so run it with TRITON_INTERPRET unset (the CLI clears it for itself only when
it is started as a subprocess by the tests).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass

import triton

log = logging.getLogger(__name__)
TARGET = ("cuda", 90, 32)
INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);")
BRANCH = re.compile(r"BRA\s+`?\(?(0x[0-9a-f]+)")


@dataclass(frozen=True)
class LoopStats:
    instructions: int  # instructions in the main loop body (what each warp issues per trip)
    loads: dict  # opcode with width → count, e.g. {"LDG.E.128": 4}
    mma: dict  # MMA opcode → count


def cuobjdump() -> str:
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")


def compile_sass(fn, signature: dict, constexprs: dict, aligned: set, num_warps: int, num_stages: int) -> str:
    """SASS text of `fn` compiled for sm_90; `aligned` names the args the launcher sees as 16-divisible."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = fn.arg_names
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names) if n in aligned}
    sig = {n: ("constexpr" if n in constexprs else signature[n]) for n in names}
    src = ASTSource(fn, sig, constexprs=constexprs, attrs=attrs)
    compiled = triton.compile(src, target=GPUTarget(*TARGET), options={"num_warps": num_warps,
                                                                       "num_stages": num_stages})
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k.cubin")
        with open(path, "wb") as f:
            f.write(compiled.asm["cubin"])
        out = subprocess.run([cuobjdump(), "-sass", path], capture_output=True, text=True, check=True)
    return out.stdout


def main_loop(sass: str) -> LoopStats:
    """The largest backward-branch loop (the K loop)."""
    ins = [(int(a, 16), t.strip()) for a, t in INSTR.findall(sass)]
    best: list = []
    for addr, text in ins:
        m = BRANCH.search(text)
        if m and int(m.group(1), 16) < addr:
            body = [t for a, t in ins if int(m.group(1), 16) <= a <= addr]
            best = body if len(body) > len(best) else best
    ops = [t.split()[1] if t.startswith("@") else t.split()[0] for t in best]
    loads = Counter(o for o in ops if o.startswith(("LDG", "LDGSTS")))
    mma = Counter(o for o in ops if "MMA" in o)
    return LoopStats(len(best), dict(loads), dict(mma))


def wide_loads(stats: LoopStats) -> int:
    return sum(c for o, c in stats.loads.items() if o.endswith(".128"))


def has_tf32(stats: LoopStats) -> bool:
    return any("TF32" in o for o in stats.mma)


def _moe_spec(gated: bool, bits: int, cfg, group: int = 128):
    from moeq.kernels.moe_gemm import _moe_kernel
    from moeq.kernels.moe_layout import k_step

    sig = {"a_ptr": "*bf16", "xs_ptr": "*fp32", "pairs_ptr": "*i32", "block_expert_ptr": "*i32", "qw_ptr": "*i32",
           "offsets_ptr": "*i64", "bits_ptr": "*i32", "s_ptr": "*fp32", "z_ptr": "*fp32", "route_w_ptr": "*fp32",
           "out_ptr": "*fp32", "n_pairs": "i32", "N": "i32", "N_COLS": "i32", "K": "i32", "G": "i32",
           "row_div": "i32", "k_split": "i32", "split_stride": "i32"}
    const = {"GATED": gated, "WEIGHTED": not gated, "FUSED_EPILOGUE": cfg.split_k == 1, "GROUP": group,
             "WIDTHS": 1 << bits, "OP": triton.language.bfloat16, "BLOCK_M": cfg.block_m, "BLOCK_N": cfg.block_n}
    aligned = {n for n, t in sig.items() if t.startswith("*")} | {"N", "N_COLS", "K", "k_split", "split_stride"}
    step = k_step(bits)
    weight_kb = (2 if gated else 1) * step * cfg.block_n * bits / 8 / 1024
    return _moe_kernel, sig, const, aligned, weight_kb, step


def analyze_moe(gated: bool, bits: int, cfg) -> dict:
    """One projection at one width (activations enter as the bf16 operand, group size 128)."""
    fn, sig, const, aligned, weight_kb, step = _moe_spec(gated, bits, cfg)
    stats = main_loop(compile_sass(fn, sig, const, aligned, cfg.num_warps, cfg.num_stages))
    threads = 32 * cfg.num_warps
    weight_words = weight_kb * 1024 / 4
    return {"kernel": f"moe_{'gate_up' if gated else 'down'}_w{bits}", "config": cfg, "k_step": step,
            "loop_instructions": stats.instructions, "weight_kb_per_trip": weight_kb,
            "instr_per_warp_per_kb": stats.instructions / weight_kb,
            "warp_instr_per_kb": stats.instructions * cfg.num_warps / weight_kb,
            "loads": stats.loads, "wide_loads": wide_loads(stats),
            # 128-bit loads per thread if every weight word came in one
            "wide_loads_needed": weight_words / (4 * threads),
            "mma": stats.mma, "tf32": has_tf32(stats)}


def analyze_wxa16(bits: int, block_m: int = 16, block_n: int = 64, block_k: int = 32) -> dict:
    """The dense W·A16 kernel (moeq.kernels.dequant_gemm, row-packed layout) at its decode tile, 4 warps."""
    from moeq.kernels.dequant_gemm import _wxa16_kernel

    sig = {"x_ptr": "*bf16", "packed_ptr": "*i32", "scale_ptr": "*fp32", "zero_ptr": "*fp32", "y_ptr": "*bf16",
           "M": "i32", "N": "i32", "K": "i32", "W": "i32", "G": "i32", "group_size": "i32"}
    const = {"BITS": bits, "OP": triton.language.bfloat16, "BLOCK_M": block_m, "BLOCK_N": block_n,
             "BLOCK_K": block_k}
    aligned = {n for n, t in sig.items() if t.startswith("*")} | {"N", "K", "W"}
    stats = main_loop(compile_sass(_wxa16_kernel, sig, const, aligned, 4, 3))
    weight_kb = block_k * block_n * bits / 8 / 1024
    return {"kernel": f"wxa16_w{bits}", "loop_instructions": stats.instructions,
            "instr_per_warp_per_kb": stats.instructions / weight_kb, "loads": stats.loads,
            "wide_loads": wide_loads(stats), "mma": stats.mma, "tf32": has_tf32(stats)}


def report(bits_list=(2, 3, 4, 8), regimes=None, projections=(True, False)) -> list[dict]:
    from moeq.kernels.configs import CONFIGS

    rows = []
    for regime, (cfg, _) in CONFIGS.items():
        if regimes and regime not in regimes:
            continue
        for bits in bits_list:
            for gated in projections:
                row = analyze_moe(gated, bits, cfg)
                row["regime"] = regime
                rows.append(row)
    return rows


def main() -> None:
    import argparse
    import json

    ap = argparse.ArgumentParser(description="SASS static check of the fused MoE kernel (sm_90, no GPU needed)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--bits", type=int, nargs="*", default=[2, 3, 4, 8])
    ap.add_argument("--regime", nargs="*", default=None)
    ap.add_argument("--projection", choices=["gate_up", "down", "both"], default="both")
    ap.add_argument("--dense", action="store_true", help="the dense W·A16 kernel instead of the MoE kernel")
    args = ap.parse_args()
    if args.dense:
        print(json.dumps([analyze_wxa16(b) for b in args.bits]))
        return
    proj = {"gate_up": (True,), "down": (False,), "both": (True, False)}[args.projection]
    rows = report(tuple(args.bits), args.regime, proj)
    if args.json:
        print(json.dumps([{**r, "config": vars(r["config"])} for r in rows]))
        return
    print("| kernel | regime | tile M×N, K step, warps, stages, split | loop instr | instr/warp/KB | 128-bit loads "
          "(weights need) | MMA | TF32 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        c = r["config"]
        print(f"| {r['kernel']} | {r['regime']} | {c.block_m}×{c.block_n}, {r['k_step']}, {c.num_warps}, "
              f"{c.num_stages}, {c.split_k} | {r['loop_instructions']} | {r['instr_per_warp_per_kb']:.0f} | "
              f"{r['wide_loads']} ({r['wide_loads_needed']:.0f}) | "
              f"{', '.join(f'{k}×{v}' for k, v in r['mma'].items())} | {'yes' if r['tf32'] else 'no'} |")


if __name__ == "__main__":
    main()
