"""moeq's GPTQ beside llm-compressor's default GPTQ (`oneshot`) on the same model, the same calibration tokens and
the same evaluation: next-token KL vs FP, top-k routing agreement, task accuracy, quantization time.

    OMP_NUM_THREADS=1 python benchmarks/vs_llmcompressor.py --model testbed-mixtral --bits 4,3,2 --seeds 0,1,2 \
        --llmc-python /work/venv-llmc/bin/python --out benchmarks/results/vs-llmcompressor-mixtral.json

llm-compressor pins its own transformers, so it runs in its own environment (e.g. `python3.11 -m venv
/work/venv-llmc; /work/venv-llmc/bin/pip install torch==2.13.0; /work/venv-llmc/bin/pip install llmcompressor
-c constraints.txt` with `torch==2.13.0` in constraints.txt) (`--llmc-python`, default: this
interpreter) through `llmc_oneshot.py`, which writes a plain dequantized checkpoint; this script evaluates that
checkpoint and moeq's quantized model with one function (`evaluate`), on one set of held-out windows and task items.
When llm-compressor cannot be imported by `--llmc-python`, the script says so and stops (exit status 0).
Both tools: symmetric int weights, groups of `--group-size`, router and lm_head kept FP, every other Linear
(attention, experts) quantized; the sets of changed tensors are compared and must be equal.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from common import context, print_table, run_recipe, standard_args, write_json

HERE = Path(__file__).resolve().parent
EVAL = {"tasks": ["testbed"], "limit": 50, "ppl_windows": 16, "seq_len": 256}
EVAL_SEED = 0  # one set of held-out windows for every row, whatever the calibration seed


def llmc_version(python: str) -> str | None:
    try:
        probe = subprocess.run([python, "-c", "import llmcompressor; print(llmcompressor.__version__)"],
                               capture_output=True, text=True)
    except OSError:  # no such interpreter
        return None
    lines = probe.stdout.strip().splitlines()  # llm-compressor may log to stdout on import
    return lines[-1].strip() if probe.returncode == 0 and lines else None


def recipe(model: str, bits: int, group: int, samples: int, seq_len: int, seed: int, act_order: bool) -> dict:
    return {"model": model, "weights": {"bits": bits, "group_size": group, "symmetric": True},
            "techniques": [{"name": "gptq", "act_order": act_order}],
            "calibration": {"samples": samples, "seq_len": seq_len}, "eval": EVAL, "seed": seed}


class Bench:
    """Loads models, builds the shared evaluation inputs, evaluates any model against the cached FP reference."""

    def __init__(self, model: str, ctx):
        from moeq.quant_core.model_io import load_model, pick_device, resolve_model
        from moeq.quant_core.streams import evaluation_tasks, evaluation_windows
        from moeq.contract.recipe import parse_recipe

        self.ctx, self.path = ctx, resolve_model(model, ctx)
        self.device = pick_device(ctx.device)
        self.ev = parse_recipe(recipe(model, 4, 128, 8, 64, EVAL_SEED, True)).eval
        _, self.tokenizer = load_model(self.path, ctx)
        # the pipeline's own seed policy (moeq.quant_core.streams): one set of evaluation windows for every seed
        self.windows, _ = evaluation_windows(self.ev, self.tokenizer, self.path)
        self.tasks = evaluation_tasks(self.ev)
        self.fp = self._fp()

    def load(self, path: Path):
        from moeq.quant_core.adapters.model import MoEModel
        from moeq.quant_core.model_io import load_model

        model, _ = load_model(path, self.ctx)
        return MoEModel(model.to(self.device))

    def _fp(self):
        from moeq.quant_core.evaluate.run import cached_fp_evaluation, evaluate_model

        moe = self.load(self.path)
        return cached_fp_evaluation(self.ctx.cache_dir, self.path, self.ev, EVAL_SEED, self.device, lambda: evaluate_model(
            moe, self.tokenizer, self.windows, self.tasks, self.ev, self.device, lambda *_: None))

    def evaluate(self, moe) -> dict:
        from moeq.quant_core.evaluate.compare import routing_report, token_kl
        from moeq.quant_core.evaluate.run import evaluate_model

        q = evaluate_model(moe, self.tokenizer, self.windows, self.tasks, self.ev, self.device, lambda *_: None)
        routing = routing_report(self.fp.probe, q.probe, {i: b.num_experts for i, b in moe.blocks.items()})
        return {"kl": token_kl(self.fp.probe, q.probe), "mean_topk_agreement": routing["mean_topk_agreement"],
                "avg_accuracy": q.avg_accuracy(), "perplexity": q.probe.perplexity}

    def calibration(self, r: dict) -> torch.Tensor:
        from moeq.quant_core.streams import calibration_windows
        from moeq.contract.recipe import parse_recipe

        return calibration_windows(parse_recipe(r), self.tokenizer, self.path)[0]


def changed_tensors(before: dict, model) -> list[str]:
    from transformers.core_model_loading import revert_weight_conversion

    after = dict(revert_weight_conversion(model, {k: v.detach() for k, v in model.state_dict().items()}))
    return sorted(k for k in before if not torch.equal(before[k], after[k].to(before[k].dtype)))


def moeq_row(bench: Bench, r: dict) -> tuple[dict, list[str]]:
    from safetensors.torch import load_file

    from moeq.quant_core.pipeline import quantize_model
    from moeq.contract.recipe import parse_recipe

    parsed = parse_recipe(r)
    moe = bench.load(bench.path)
    torch.manual_seed(parsed.seed)
    wall, cpu = time.perf_counter(), time.process_time()
    _, info = quantize_model(moe, bench.tokenizer, parsed, bench.ctx, bench.device, bench.path)
    timing = {"quantize_wall_s": time.perf_counter() - wall, "quantize_cpu_s": time.process_time() - cpu,
              "calibration_tokens": info["num_tokens"]}
    changed = changed_tensors(load_file(bench.path / "model.safetensors"), moe.model)
    return {**bench.evaluate(moe), **timing}, changed


def llmc_row(bench: Bench, r: dict, python: str, work: Path, routed_only: bool) -> tuple[dict, list[str], dict]:
    windows = bench.calibration(r)
    wfile = work / "calib.pt"
    out = work / f"llmc-w{r['weights']['bits']}-s{r['seed']}{'-routed' if routed_only else ''}"
    torch.save(windows, wfile)
    env = {**os.environ, "PYTHONPATH": ""}
    wall = time.perf_counter()
    proc = subprocess.run([python, str(HERE / "llmc_oneshot.py"), "--model", str(bench.path), "--windows", str(wfile),
                           "--bits", str(r["weights"]["bits"]), "--group-size", str(r["weights"]["group_size"]),
                           "--out", str(out), *(["--routed-only"] if routed_only else [])],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"llm-compressor run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    meta = json.loads((out / "llmc.json").read_text())
    row = {**bench.evaluate(bench.load(out)), "quantize_wall_s": meta["oneshot_wall_s"],
           "quantize_cpu_s": meta["oneshot_cpu_s"], "process_wall_s": time.perf_counter() - wall,
           "calibration_tokens": int(windows.numel()), "max_distinct_values_per_group": meta["max_distinct_values_per_group"]}
    return row, meta["changed_tensors"], meta


def check_against_pipeline(bench: Bench, r: dict, row: dict) -> dict:
    """The same recipe through moeq's full pipeline must report the KL/agreement this script measured."""
    result, _ = run_recipe(r, bench.ctx)
    m = result["metrics"]
    got = {"kl": m["kl"], "mean_topk_agreement": m["routing"]["mean_topk_agreement"]}
    for k, v in got.items():
        if abs(v - row[k]) > 1e-9:
            raise SystemExit(f"evaluation mismatch on {k}: pipeline {v}, this script {row[k]}")
    return got


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    for key in dict.fromkeys((r["bits"], r["tool"]) for r in rows):
        runs = [r for r in rows if (r["bits"], r["tool"]) == key]
        s = {"bits": key[0], "tool": key[1], "seeds": len(runs)}
        for k in ("kl", "mean_topk_agreement", "avg_accuracy", "quantize_wall_s", "quantize_cpu_s"):
            vals = [r[k] for r in runs]
            s[k], s[k + "_std"] = statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)
        out.append(s)
    return out


def main() -> None:
    ap = standard_args(__doc__)
    ap.add_argument("--bits", default="4,3,2")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--llmc-python", default=sys.executable)
    ap.add_argument("--llmc-routed", action="store_true", help="add an llm-compressor row that calibrates each "
                                                               "expert on its routed tokens only, as moeq does")
    ap.add_argument("--check", action="store_true", help="also run the first moeq recipe through moeq's pipeline "
                                                         "and require the same KL/agreement")
    ap.set_defaults(samples=256)  # the llm-compressor setting: 256 × 128 calibration tokens
    args = ap.parse_args()
    EVAL["limit"] = args.limit
    version = llmc_version(args.llmc_python)
    if version is None:
        print(f"SKIPPED: llmcompressor is not importable by {args.llmc_python} "
              f"(install it in a separate environment and pass --llmc-python)")
        return
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    ctx = replace(context(), device="cpu")
    bench = Bench(args.model, ctx)
    rows, checks = [], {}
    with tempfile.TemporaryDirectory(prefix="vs-llmc-") as tmp:
        for bits in (int(b) for b in args.bits.split(",")):
            for seed in (int(s) for s in args.seeds.split(",")):
                base = dict(model=args.model, bits=bits, group=args.group_size, samples=args.samples,
                            seq_len=args.seq_len, seed=seed)
                llmc_changed = []
                for routed in (False, True) if args.llmc_routed else (False,):
                    lrow, lchanged, meta = llmc_row(bench, recipe(**base, act_order=True), args.llmc_python, Path(tmp),
                                                    routed)
                    label = "GPTQ, experts on routed tokens" if routed else "GPTQ (default: all experts see all tokens)"
                    rows.append({"bits": f"W{bits}", "seed": seed, "tool": f"llm-compressor {version} {label}", **lrow})
                    llmc_changed.append(lchanged)
                for act_order in (True, False):
                    r = recipe(**base, act_order=act_order)
                    row, changed = moeq_row(bench, r)
                    for lchanged in llmc_changed:
                        if changed != lchanged:
                            raise SystemExit(f"the two tools quantized different tensors: moeq {len(changed)}, "
                                             f"llm-compressor {len(lchanged)}: {sorted(set(changed) ^ set(lchanged))[:6]}")
                    if args.check and not checks and seed == EVAL_SEED:
                        checks = check_against_pipeline(bench, r, row)
                    label = "moeq GPTQ, act-order (default)" if act_order else "moeq GPTQ, act-order off"
                    rows.append({"bits": f"W{bits}", "seed": seed, "tool": label, **row})
                print(f"W{bits} seed {seed} done", file=sys.stderr, flush=True)
                write_json(args.out, {"partial": True, "rows": rows})
    summary = summarize(rows)
    print(f"# moeq vs llm-compressor {version} on {args.model}: symmetric int, group {args.group_size}, "
          f"{args.samples} × {args.seq_len} calibration tokens, seeds {args.seeds} (mean ± std)")
    print_table(summary, [("bits", "bits", ""), ("tool", "tool", ""), ("KL", "kl", ".5f"), ("± std", "kl_std", ".5f"),
                          ("top-k agree", "mean_topk_agreement", ".4f"), ("avg acc", "avg_accuracy", ".3f"),
                          ("quantize wall s", "quantize_wall_s", ".1f"), ("quantize CPU s", "quantize_cpu_s", ".1f")])
    write_json(args.out, {"model": args.model, "llmcompressor": version, "llmc_settings": meta, "group_size": args.group_size,
                          "calibration": [args.samples, args.seq_len], "seeds": args.seeds, "eval": EVAL,
                          "eval_seed": EVAL_SEED, "pipeline_check": checks, "rows": rows, "summary": summary})


if __name__ == "__main__":
    main()
