"""Scale benchmark: quantize and evaluate a checkpoint several times larger than the memory the run may use.

Generates a random-weight Mixtral-shaped sharded checkpoint (float32, many layers), then runs RTN
and GPTQ W4 (g128) with evaluation (perplexity, next-token KL, routing agreement over held-out
windows) in a child process inside a cgroup whose memory limit is checkpoint_size / ratio (the
kernel enforces it; page cache counts against it). Records checkpoint size, the cgroup's peak
charge, the run's peak RSS, wall time and throughput, and per-layer costs for extrapolation.

    python benchmarks/scale.py --size-gb 3.2 --ratio 3 --out benchmarks/results/scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quant_core.streaming.limits import cgroup_unavailable_reason, run_limited  # noqa: E402
from quant_core.streaming.select import checkpoint_bytes  # noqa: E402
from quant_core.streaming.synthetic import SyntheticSpec, write_synthetic  # noqa: E402



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gb", type=float, default=3.2, help="checkpoint size to generate (GB, 1e9 bytes)")
    ap.add_argument("--ratio", type=float, default=3.0, help="checkpoint size / memory limit")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--intermediate", type=int, default=512)
    ap.add_argument("--methods", default="rtn,gptq")
    ap.add_argument("--work", type=Path, default=Path("/tmp/moeq-scale"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    reason = cgroup_unavailable_reason()
    if reason:
        sys.exit(f"scale benchmark needs a real memory limit: {reason}")
    base = SyntheticSpec(hidden=args.hidden, intermediate=args.intermediate, layers=1)
    layers = max(2, round(args.size_gb * 1e9 / (4 * base.params_per_layer)))
    spec = SyntheticSpec(hidden=args.hidden, intermediate=args.intermediate, layers=layers, layers_per_shard=4)
    model = args.work / f"mixtral-synthetic-{args.hidden}x{layers}"
    if not (model / "config.json").is_file():
        t = time.perf_counter()
        write_synthetic(model, spec, seed=0)
        print(f"generated {model} in {time.perf_counter() - t:.0f}s")
    size = checkpoint_bytes(model)
    limit = int(size / args.ratio)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    rows = []
    for method in args.methods.split(","):
        recipe = {"model": str(model), "weights": {"bits": 4, "group_size": 128}, "techniques": [method],
                  "calibration": {"source": "random", "samples": 8, "seq_len": 128},
                  "eval": {"source": "random", "tasks": [], "ppl_windows": 4, "seq_len": 128,
                           "kl_tokens": 512}}
        out = args.work / f"result-{method}.json"
        spec_file = args.work / f"run-{method}.json"
        spec_file.write_text(json.dumps({"recipe": recipe, "out": str(out), "stream": "on",
                                         "zoo_dir": str(args.work / "zoo"), "cache_dir": str(args.work / "cache"),
                                         "save_dir": str(args.work / f"saved-{method}")}))
        t = time.perf_counter()
        res = run_limited([sys.executable, "-m", "quant_core.streaming.child", str(spec_file)], limit, 36000, env=env)
        wall = time.perf_counter() - t
        if res.returncode != 0:
            sys.exit(f"{method} failed (rc {res.returncode}) under {limit / 2**30:.2f} GiB: {res.stderr[-2000:]}")
        r = json.loads(out.read_text())
        params = spec.params_per_layer * layers
        row = {"method": method, "checkpoint_bytes": size, "limit_bytes": limit, "layers": layers,
               "params": params, "cgroup_peak_bytes": res.max_usage_bytes, "limit_hits": res.failcnt,
               "peak_host_rss_mb": r["peak_host_rss_mb"], "peak_device_mb": r["peak_device_mb"],
               "wall_s": round(wall, 1), "timings": r["timings"],
               "params_per_s": round(params / wall), "quantize_s_per_layer": round(r["timings"]["quantize_s"] / layers, 3),
               "perplexity": r["metrics"].get("perplexity"), "kl": r["metrics"]["kl"],
               "rss_over_checkpoint": round(r["peak_host_rss_mb"] * 2**20 / size, 3)}
        rows.append(row)
        shutil.rmtree(args.work / f"saved-{method}", ignore_errors=True)
        print(json.dumps(row))
    print("| method | checkpoint | limit | peak RSS | RSS/ckpt | cgroup peak | wall | params/s | quantize s/layer |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['checkpoint_bytes'] / 1e9:.2f} GB | {r['limit_bytes'] / 1e9:.2f} GB | "
              f"{r['peak_host_rss_mb']:.0f} MB | {r['rss_over_checkpoint']:.2f} | {r['cgroup_peak_bytes'] / 1e9:.2f} GB | "
              f"{r['wall_s']:.0f} s | {r['params_per_s'] / 1e6:.2f} M | {r['quantize_s_per_layer']:.2f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"spec": spec.__dict__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
