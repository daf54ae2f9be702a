"""Where one streamed GPTQ layer spends its time: a profile of the scale benchmark's layer shape.

Generates a few layers of the same random Mixtral shape as `scale.py`, runs one streamed GPTQ W4
(g128) run under cProfile with `--threads` intra-op threads, and prints seconds per layer for
each part of the quantization pass (read + fuse, calibration forwards, Hessians, Cholesky and
inverse, the GPTQ column loop, RTN/dequant of the codes, writing the layer) — as CPU seconds of
the process (`--timer cpu`, default: all threads, spin-waiting included) or wall seconds. Wall and
CPU time of the whole run are printed beside each other: on a shared box the difference is waiting.

    python benchmarks/scale_profile.py --threads 1 --layers 3

`--matrices ROWSxCOLS,...` instead times GPTQ W4 g128 (act-order) on single real-width matrices
(e.g. Mixtral-8x7B's fused gate/up 28672x4096 and down 4096x14336) from random weights and a
Hessian of min(2*cols, 4096) random activations, with rows capped at `--rows-cap`: the Cholesky/inverse part
does not depend on the rows and the rest is linear in them, so the full-matrix CPU time is
t_chol + rows/cap * (t_total - t_chol). CPU seconds of this process (wall is inflated on a shared box).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

# (label, (file suffix, function name)) — cumulative time of each, per layer
PARTS = [
    ("read + fuse layer (load_layer)", ("streaming/skeleton.py", "load_layer")),
    ("attention inputs + Hessians (collect_linear_inputs)", ("algorithms/capture.py", "collect_linear_inputs")),
    ("MoE input capture (capture_module_input)", ("algorithms/capture.py", "capture_module_input")),
    ("layer forward to next layer (run_layer)", ("algorithms/capture.py", "run_layer")),
    ("expert Hessians (_hessians)", ("algorithms/experts.py", "_hessians")),
    ("GPTQ total (gptq_quantize)", ("functional/gptq.py", "gptq_quantize")),
    ("  Cholesky + inverse (_inverse_cholesky)", ("functional/gptq.py", "_inverse_cholesky")),
    ("  group params (compute_params)", ("functional/affine.py", "compute_params")),
    ("  codes (quantize)", ("functional/affine.py", "quantize")),
    ("dequant into the model (WeightRecord.dequant)", ("moeq/quant_core/quantized.py", "dequant")),
    ("write layer (write_layer)", ("streaming/writer.py", "write_layer")),
    ("quantize pass total (quantize_streamed)", ("streaming/quantize.py", "quantize_streamed")),
]


def _cumulative(stats: pstats.Stats, file_suffix: str, func: str) -> float:
    return sum(v[3] for (f, _, name), v in stats.stats.items() if name == func and f.endswith(file_suffix))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--intermediate", type=int, default=512)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--calib-samples", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--timer", choices=["cpu", "wall"], default="cpu",
                    help="per-part seconds as process CPU time (all threads) or wall time")
    ap.add_argument("--matrices", help="ROWSxCOLS,... : time single real-width matrices instead")
    ap.add_argument("--rows-cap", type=int, default=2048)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.matrices:
        return _matrices(args)

    from moeq.quant_core.api import run
    from moeq.quant_core.context import RunContext
    from moeq.quant_core.streaming.synthetic import SyntheticSpec, write_synthetic

    spec = SyntheticSpec(hidden=args.hidden, intermediate=args.intermediate, experts=args.experts,
                         layers=args.layers, layers_per_shard=2)
    with tempfile.TemporaryDirectory(prefix="moeq-scale-profile-") as tmp:
        model = write_synthetic(Path(tmp) / "model", spec, seed=0)
        recipe = {"model": str(model), "weights": {"bits": 4, "group_size": 128}, "techniques": ["gptq"],
                  "calibration": {"source": "random", "samples": args.calib_samples, "seq_len": args.seq_len},
                  "eval": {"source": "random", "tasks": [], "ppl_windows": 1, "seq_len": args.seq_len,
                           "kl_tokens": args.seq_len}}
        ctx = RunContext(zoo_dir=Path(tmp) / "zoo", cache_dir=Path(tmp) / "cache", stream="on", device="cpu")
        prof = cProfile.Profile(time.process_time if args.timer == "cpu" else time.perf_counter)
        wall, cpu = time.perf_counter(), time.process_time()
        prof.enable()
        result = run(recipe, ctx)
        prof.disable()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stats = pstats.Stats(prof)
    n = args.layers
    rows = {label: round(_cumulative(stats, *key) / n, 4) for label, key in PARTS}
    print(f"shape hidden {args.hidden}, {args.experts} experts of intermediate {args.intermediate}, "
          f"{spec.params_per_layer / 1e6:.2f} M params/layer; calibration {args.calib_samples}x{args.seq_len} tokens; "
          f"threads {args.threads}; run wall {wall:.1f} s, CPU {cpu:.1f} s")
    print(f"| part | {args.timer} s/layer |\n|---|---|")
    for label, v in rows.items():
        print(f"| {label} | {v:.3f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)}, "wall_s": wall, "cpu_s": cpu,
                                        "params_per_layer": spec.params_per_layer, "s_per_layer": rows,
                                        "timings": result["timings"]}, indent=1))


def _matrices(args) -> None:
    from moeq.quant_core.functional.gptq import _inverse_cholesky, _prepare_hessian, gptq_quantize

    gen = torch.Generator().manual_seed(0)
    out = []
    print("| matrix | rows timed | Cholesky+inverse CPU s | GPTQ CPU s (timed rows) | GPTQ CPU s (all rows) | M params/CPU s |")
    print("|---|---|---|---|---|---|")
    for spec in args.matrices.split(","):
        rows, cols = (int(v) for v in spec.lower().split("x"))
        r = min(rows, args.rows_cap)
        w = torch.randn(1, r, cols, generator=gen) * 0.02
        x = torch.randn(min(2 * cols, 4096), cols, generator=gen)  # dampening keeps H positive definite
        h = (2.0 * (x.T @ x) / x.shape[0])[None]
        del x
        c = time.process_time()
        hp, _ = _prepare_hessian(h, w.clone(), 0.01)
        _inverse_cholesky(hp)
        t_chol = time.process_time() - c
        del hp
        c = time.process_time()
        gptq_quantize(w, h, 4, 128, False, act_order=True)
        t = time.process_time() - c
        full = t_chol + rows / r * (t - t_chol)
        row = {"rows": rows, "cols": cols, "rows_timed": r, "chol_cpu_s": round(t_chol, 2), "gptq_cpu_s": round(t, 2),
               "gptq_cpu_s_all_rows": round(full, 1), "params_per_cpu_s": round(rows * cols / full)}
        out.append(row)
        print(f"| {rows}x{cols} | {r} | {t_chol:.2f} | {t:.2f} | {full:.1f} | {rows * cols / full / 1e6:.2f} |", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"threads": args.threads, "matrices": out}, indent=1))


if __name__ == "__main__":
    main()
