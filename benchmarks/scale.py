"""Scale benchmark: quantize and evaluate a checkpoint several times larger than the memory the run may use.

Generates a random-weight Mixtral-shaped sharded checkpoint, then runs RTN and GPTQ W4 (g128) with
evaluation (perplexity, next-token KL, routing agreement over held-out windows) in a child process
inside a cgroup whose memory limit is checkpoint_size / ratio (the kernel enforces it; page cache
counts against it), with no streaming flag (`stream: auto` decides). Records checkpoint size, the
cgroup's peak charge, the run's peak RSS (overall and per stage), the expert chunks it chose, wall
and CPU time, throughput, and per-layer costs for extrapolation. `--compare` also runs each method
with no limit (in memory, concurrently with the limited run) and records whether the metrics are
equal.

Two shapes: `--shape thin` (default: many small float32 layers, d=512) and `--shape fat` (few
large bfloat16 layers: d=1024, I=3584, 8 experts, 169 MB a layer, three layers a shard — the
shape of the issue's 3.38 GiB checkpoint, with as many layers as `--size-gb` or `--layers` asks).

The child runs with `--threads` intra-op threads (default 1): GPTQ's column loop issues thousands of
small tensor ops per layer, and with more OpenMP threads than free cores every op waits at a thread
barrier (measured in RESULTS.md: 4-7x slower at 2 threads on a busy 2-core box).

    python benchmarks/scale.py --size-gb 3.2 --ratio 3 --out benchmarks/results/scale.json
    python benchmarks/scale.py --shape fat --layers 12 --ratio 2.857 --compare --out benchmarks/results/scale-fat.json
    python benchmarks/scale.py --shape fat --layers 16 --ratio 2.857 --methods eaquant --act-bits 4 --compare
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moeq.quant_core.streaming.limits import cgroup_unavailable_reason, run_limited  # noqa: E402
from moeq.quant_core.streaming.select import checkpoint_bytes  # noqa: E402
from moeq.quant_core.streaming.synthetic import SyntheticSpec, write_synthetic  # noqa: E402

SHAPES = {"thin": {"hidden": 512, "intermediate": 512, "experts": 8, "dtype": "float32", "layers_per_shard": 4},
          "fat": {"hidden": 1024, "intermediate": 3584, "experts": 8, "dtype": "bfloat16", "layers_per_shard": 3}}



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gb", type=float, default=3.2, help="checkpoint size to generate (GB, 1e9 bytes)")
    ap.add_argument("--ratio", type=float, default=3.0, help="checkpoint size / memory limit")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="thin")
    ap.add_argument("--layers", type=int, help="number of layers (instead of --size-gb)")
    ap.add_argument("--hidden", type=int)
    ap.add_argument("--intermediate", type=int)
    ap.add_argument("--experts", type=int)
    ap.add_argument("--chunk", default="auto", help="stream_chunk_experts of the run ('auto' or an integer)")
    ap.add_argument("--compare", action="store_true", help="also run without a limit and compare the metrics")
    ap.add_argument("--methods", default="rtn,gptq", help="techniques or presets (eaquant, duquant), comma-separated")
    ap.add_argument("--act-bits", type=int, default=16, help="activation bits (16: weights only)")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads of the run (OMP/MKL)")
    ap.add_argument("--calib-samples", type=int, default=8, help="calibration windows (GPTQ)")
    ap.add_argument("--seq-len", type=int, default=128, help="calibration and evaluation window length")
    ap.add_argument("--eval-windows", type=int, default=4)
    ap.add_argument("--work", type=Path, default=Path("/tmp/moeq-scale"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    reason = cgroup_unavailable_reason()
    if reason:
        sys.exit(f"scale benchmark needs a real memory limit: {reason}")
    shape = {k: v for k, v in SHAPES[args.shape].items()}
    shape.update({k: getattr(args, k) for k in ("hidden", "intermediate", "experts") if getattr(args, k)})
    base = SyntheticSpec(**shape, layers=1)
    itemsize = 2 if base.dtype == "bfloat16" else 4
    layers = args.layers or max(2, round(args.size_gb * 1e9 / (itemsize * base.params_per_layer)))
    spec = SyntheticSpec(**{**shape, "layers": layers})
    model = args.work / (f"mixtral-synthetic-{spec.hidden}x{layers}-i{spec.intermediate}e{spec.experts}-{spec.dtype}")
    if not (model / "config.json").is_file():
        t = time.perf_counter()
        write_synthetic(model, spec, seed=0)
        print(f"generated {model} in {time.perf_counter() - t:.0f}s")
    size = checkpoint_bytes(model)
    limit = int(size / args.ratio)
    threads = str(args.threads)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    rows = []
    for method in args.methods.split(","):
        recipe = _recipe(args, model, method)
        out = args.work / f"result-{method}.json"
        spec_file = args.work / f"run-{method}.json"
        chunk = args.chunk if args.chunk == "auto" else int(args.chunk)
        spec_file.write_text(json.dumps({"recipe": recipe, "out": str(out), "stream": "auto",
                                         "stream_chunk_experts": chunk,
                                         "zoo_dir": str(args.work / "zoo"), "cache_dir": str(args.work / "cache"),
                                         "save_dir": str(args.work / f"saved-{method}")}))
        unlimited = _start_unlimited(args, recipe, method, env) if args.compare else None  # runs beside it
        t, cpu0, load0 = time.perf_counter(), _child_cpu(), os.getloadavg()[0]
        res = run_limited([sys.executable, "-m", "moeq.quant_core.streaming.child", str(spec_file)], limit, 36000, env=env)
        wall, cpu, load1 = time.perf_counter() - t, _child_cpu() - cpu0, os.getloadavg()[0]
        if res.returncode != 0:
            sys.exit(f"{method} failed (rc {res.returncode}) under {limit / 2**30:.2f} GiB: {res.stderr[-2000:]}")
        r = json.loads(out.read_text())
        unlimited = _finish_unlimited(*unlimited, method) if unlimited is not None else None
        params = spec.params_per_layer * layers
        row = {"method": method, "checkpoint_bytes": size, "limit_bytes": limit, "layers": layers,
               "params": params, "cgroup_peak_bytes": res.max_usage_bytes, "limit_hits": res.failcnt,
               "peak_host_rss_mb": r["peak_host_rss_mb"], "peak_device_mb": r["peak_device_mb"],
               "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "threads": args.threads,
               "load_avg_start_end": [load0, load1], "timings": r["timings"],
               "calibration_tokens": args.calib_samples * args.seq_len if method != "rtn" else 0,
               "params_per_s": round(params / wall), "quantize_s_per_layer": round(r["timings"]["quantize_s"] / layers, 3),
               "s_per_layer": {k[:-2]: round(v / layers, 3) for k, v in r["timings"].items()
                               if k in ("fp_evaluate_s", "quantize_s", "evaluate_s")},
               "perplexity": r["metrics"].get("perplexity"), "kl": r["metrics"]["kl"],
               "rss_over_checkpoint": round(r["peak_host_rss_mb"] * 2**20 / size, 3),
               "cgroup_peak_over_checkpoint": round(res.max_usage_bytes / size, 3),
               "stage_peaks": r.get("streaming", {}).get("stage_peaks"),
               "expert_chunks": r.get("streaming", {}).get("expert_chunks"), "shape": args.shape}
        if unlimited is not None:
            row["unlimited"] = {"streamed": "streaming" in unlimited, "peak_host_rss_mb": unlimited["peak_host_rss_mb"],
                                "wall_s": unlimited["wall_s"]}
            row["metrics_equal_unlimited"] = unlimited["metrics"] == r["metrics"] and unlimited["bits"] == r["bits"]
        rows.append(row)
        shutil.rmtree(args.work / f"saved-{method}", ignore_errors=True)
        print(json.dumps(row), flush=True)
        if args.out:  # after every method: a long run's finished rows survive an interruption
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"spec": spec.__dict__, "rows": rows}, indent=1))
    print("| shape | method | checkpoint | limit | peak RSS | RSS/ckpt | cgroup peak | chunk | wall | CPU | params/s | "
          "quantize s/layer | = unlimited |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        chunk = (r["expert_chunks"] or {}).get("quantize", {}).get("experts_per_chunk")
        print(f"| {r['shape']} | {r['method']} | {r['checkpoint_bytes'] / 1e9:.2f} GB | {r['limit_bytes'] / 1e9:.2f} GB | "
              f"{r['peak_host_rss_mb']:.0f} MiB | {r['rss_over_checkpoint']:.3f} | {r['cgroup_peak_bytes'] / 1e9:.2f} GB | "
              f"{chunk} | {r['wall_s']:.0f} s | {r['cpu_s']:.0f} s | {r['params_per_s'] / 1e6:.2f} M | "
              f"{r['quantize_s_per_layer']:.2f} | {r.get('metrics_equal_unlimited', '-')} |")


def _recipe(args, model: Path, method: str) -> dict:
    """W4 (g128) with `method` — a technique, or a preset with its own weight settings — and
    `--act-bits` activations."""
    from moeq.contract.presets import PRESETS, expand, merge

    recipe = {"model": str(model), "weights": {"bits": 4, "group_size": 128},
              "calibration": {"source": "random", "samples": args.calib_samples, "seq_len": args.seq_len},
              "eval": {"source": "random", "tasks": [], "ppl_windows": args.eval_windows, "seq_len": args.seq_len,
                       "kl_tokens": args.eval_windows * args.seq_len}}
    recipe = merge(recipe, expand([method])) if method in PRESETS else {**recipe, "techniques": [method]}
    if args.act_bits < 16:
        recipe["activations"] = {"bits": args.act_bits}
    return recipe


def _start_unlimited(args, recipe: dict, method: str, env: dict):
    """The same run with no memory limit (`stream: auto` then keeps the model in memory), started in
    the background beside the limited one (outside its cgroup: neither is charged for the other)."""
    out = args.work / f"result-{method}-unlimited.json"
    spec_file = args.work / f"run-{method}-unlimited.json"
    spec_file.write_text(json.dumps({"recipe": recipe, "out": str(out), "stream": "auto",
                                     "zoo_dir": str(args.work / "zoo"), "cache_dir": str(args.work / "cache-unlimited")}))
    proc = subprocess.Popen([sys.executable, "-m", "moeq.quant_core.streaming.child", str(spec_file)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc, out


def _finish_unlimited(proc, out: Path, method: str) -> dict:
    _, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"{method} without a limit failed (rc {proc.returncode}): {err[-2000:]}")
    return json.loads(out.read_text())


def _child_cpu() -> float:
    """User + system CPU seconds of waited-for children so far (the run's own CPU time, by difference)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


if __name__ == "__main__":
    main()
