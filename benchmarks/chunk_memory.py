"""Per-expert working set of a streamed run: peak host RSS per stage at several expert-chunk sizes.

Generates a random-weight Mixtral-shaped checkpoint (default the scale benchmark's fat shape:
d=1024, I=3584, 8 experts, 2 layers, bfloat16; `--dtype float32` for a float32 one), then runs
each method once per chunk size in a fresh child process (stream on, no memory limit,
`OMP_NUM_THREADS=1`, calibration 4 × 64 tokens, evaluation 2 × 64) and records each stage's peak RSS (`result["streaming"]["stage_peaks"]`). The slope over
the chunk sizes is `w`, the bytes one more expert in a chunk costs (docs/streaming.md "What bounds
memory"). Each run also records the sha256 of every saved safetensors file: two versions of the
code that quantize identically give identical digests.

`--trace` samples the child's RSS every millisecond from a thread with the main thread's innermost
moeq frame (file:line) and prints, per stage, the frames where RSS was highest — where the bytes go.

    python benchmarks/chunk_memory.py --methods rtn,gptq --chunks 1,2 --out benchmarks/results/chunk-memory.json
    python benchmarks/chunk_memory.py --methods rtn --chunks 1 --trace
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moeq.quant_core.streaming.synthetic import SyntheticSpec, write_synthetic  # noqa: E402

STAGES = ("load", "fp_evaluate", "quantize", "evaluate", "save")
STATUS = Path("/proc/self/status")


def _rss_mib() -> float:
    for line in STATUS.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _where(frame) -> str:
    """The innermost frame in moeq's own code (file:line function)."""
    while frame is not None:
        f = frame.f_code.co_filename
        if "/moeq/" in f:
            return f"{f.split('/moeq/', 1)[1]}:{frame.f_lineno} {frame.f_code.co_name}"
        frame = frame.f_back
    return "-"


def _traced_child(spec_file: str, trace_out: str) -> int:
    """Run the child with an RSS sampler: per sample (RSS, innermost moeq frame of the main thread)."""
    from moeq.quant_core.streaming import child

    main_id = threading.get_ident()
    samples: list[tuple[float, str]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            frame = sys._current_frames().get(main_id)
            samples.append((_rss_mib(), _where(frame)))
            time.sleep(0.001)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        rc = child.main([spec_file])
    finally:
        stop.set()
        t.join()
    top: dict[str, float] = {}
    for rss, where in samples:
        top[where] = max(top.get(where, 0.0), rss)
    Path(trace_out).write_text(json.dumps(sorted(top.items(), key=lambda kv: -kv[1])))
    return rc


def _digests(saved: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(saved.glob("*.safetensors"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="rtn,gptq")
    ap.add_argument("--chunks", default="1,2", help="experts per chunk, one child run each")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--intermediate", type=int, default=3584)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16", help="the checkpoint's dtype")
    ap.add_argument("--trace", action="store_true", help="sample RSS with the current moeq frame (slower)")
    ap.add_argument("--top", type=int, default=12, help="frames printed per run with --trace")
    ap.add_argument("--work", type=Path, default=Path("/tmp/moeq-chunk-memory"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    spec = SyntheticSpec(hidden=args.hidden, intermediate=args.intermediate, experts=args.experts, layers=args.layers,
                         dtype=args.dtype, layers_per_shard=args.layers)
    model = args.work / f"mixtral-{spec.hidden}x{spec.layers}-i{spec.intermediate}e{spec.experts}-{args.dtype}"
    if not (model / "config.json").is_file():
        write_synthetic(model, spec, seed=0)
    expert_mib = 3 * spec.hidden * spec.intermediate * (2 if args.dtype == "bfloat16" else 4) / 2**20
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    rows = []
    for method in args.methods.split(","):
        for chunk in [int(c) for c in args.chunks.split(",")]:
            tag = f"{method}-c{chunk}-{args.dtype}"
            recipe = {"model": str(model), "weights": {"bits": 4, "group_size": 128}, "techniques": [method],
                      "calibration": {"source": "random", "samples": 4, "seq_len": 64},
                      "eval": {"source": "random", "tasks": [], "ppl_windows": 2, "seq_len": 64, "kl_tokens": 128}}
            saved, out = args.work / f"saved-{tag}", args.work / f"result-{tag}.json"
            spec_file = args.work / f"run-{tag}.json"
            spec_file.write_text(json.dumps({"recipe": recipe, "out": str(out), "stream": "on",
                                             "stream_chunk_experts": chunk, "zoo_dir": str(args.work / "zoo"),
                                             "cache_dir": str(args.work / f"cache-{tag}"), "save_dir": str(saved)}))
            cmd = [sys.executable, "-m", "moeq.quant_core.streaming.child", str(spec_file)]
            trace = args.work / f"trace-{tag}.json"
            if args.trace:
                cmd = [sys.executable, __file__, "--_child", str(spec_file), str(trace)]
            t, load0 = time.perf_counter(), os.getloadavg()[0]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{tag} failed (rc {proc.returncode}): {proc.stderr[-3000:]}")
            r = json.loads(out.read_text())
            peaks = {k: v["peak_host_rss_mb"] for k, v in r["streaming"]["stage_peaks"].items()}
            row = {"method": method, "experts_per_chunk": chunk, "stage_peak_rss_mib": peaks,
                   "timings": r["timings"], "kl": r["metrics"]["kl"], "perplexity": r["metrics"].get("perplexity"),
                   "wall_s": round(time.perf_counter() - t, 1), "load_avg_start_end": [load0, os.getloadavg()[0]],
                   "saved_sha256": _digests(saved)}
            if args.trace:
                row["trace_top"] = json.loads(trace.read_text())[:args.top]
                print(f"{tag}: highest RSS by innermost moeq frame")
                for where, rss in row["trace_top"]:
                    print(f"  {rss:7.0f} MiB  {where}")
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k not in ("trace_top", "saved_sha256")}), flush=True)
    slopes = {}
    for method in args.methods.split(","):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["experts_per_chunk"])
        if len(mine) > 1:
            a, b = mine[0], mine[-1]
            dc = b["experts_per_chunk"] - a["experts_per_chunk"]
            slopes[method] = {s: round((b["stage_peak_rss_mib"][s] - a["stage_peak_rss_mib"][s]) / dc, 1)
                              for s in ("quantize", "evaluate", "fp_evaluate")}
    print("| method | chunk | " + " | ".join(STAGES) + " | wall |")
    print("|---|---|" + "---|" * len(STAGES) + "---|")
    for r in rows:
        print(f"| {r['method']} | {r['experts_per_chunk']} | "
              + " | ".join(f"{r['stage_peak_rss_mib'].get(s, 0):.0f}" for s in STAGES) + f" | {r['wall_s']:.0f} s |")
    for method, s in slopes.items():
        print(f"{method}: w per expert (MiB) " + ", ".join(f"{k} {v} ({v / expert_mib:.1f}x the expert's bytes)"
                                                           for k, v in s.items()))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"spec": spec.__dict__, "expert_mib": expert_mib, "rows": rows,
                                        "w_per_expert_mib": slopes}, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_child":
        sys.exit(_traced_child(sys.argv[2], sys.argv[3]))
    main()
