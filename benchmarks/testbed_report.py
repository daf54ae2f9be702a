"""Testbed report: FP task accuracy vs chance, perplexity, per-domain expert specialization, and the
damage RTN does at W8/W4/W3/W2 (accuracy, KL, routing agreement), as a table and JSON.

    python benchmarks/testbed_report.py --model testbed-mixtral --out benchmarks/testbed-mixtral.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moeq.quant_core.adapters.dispatch import DispatchRecorder  # noqa: E402
from moeq.quant_core.adapters.model import MoEModel  # noqa: E402
from moeq.quant_core.api import run  # noqa: E402
from moeq.quant_core.context import RunContext  # noqa: E402
from moeq.quant_core.model_io import load_model, resolve_model  # noqa: E402
from moeq.quant_core.zoo.corpus import DOMAINS, MIXTURE, domain_documents  # noqa: E402


def entropy_bits(counts: torch.Tensor) -> float:
    p = counts.float() / counts.sum().clamp(min=1)
    p = p[p > 0]
    return float(-(p * p.log2()).sum())


@torch.no_grad()
def specialization(moe: MoEModel, tokenizer, docs_per_domain: int = 200) -> dict:
    """Per domain and MoE layer: entropy (bits) of its tokens' expert assignments vs uniform log2(n)."""
    out = {}
    overall = {i: torch.zeros(b.num_experts) for i, b in moe.blocks.items()}
    for domain in DOMAINS:
        docs = domain_documents(7, docs_per_domain, domain)
        counts = {i: torch.zeros(b.num_experts) for i, b in moe.blocks.items()}
        with DispatchRecorder(moe) as rec:
            for doc in docs:
                ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer(doc, add_special_tokens=False)["input_ids"]]])
                moe.model(input_ids=ids)
        for i in counts:
            counts[i] += rec.take(i).counts(len(counts[i])).float()
            overall[i] += counts[i] * MIXTURE[domain]
        out[domain] = {str(i): round(entropy_bits(c), 3) for i, c in counts.items()}
    uniform = math.log2(next(iter(moe.blocks.values())).num_experts)
    load = {str(i): [round(float(x), 4) for x in (c / c.sum())] for i, c in overall.items()}
    return {"entropy_bits": out, "uniform_bits": uniform, "mixture_load": load}


def rtn_damage(model: str, ctx: RunContext, limit: int) -> list[dict]:
    rows = []
    for bits in (8, 4, 3, 2):
        recipe = {"model": model, "weights": {"bits": bits, "group_size": None}, "techniques": ["rtn"],
                  "eval": {"limit": limit}}
        t = time.perf_counter()
        r = run(recipe, ctx)
        m = r["metrics"]
        rows.append({"bits": bits, "avg_accuracy": m["avg_accuracy"], "fp_avg_accuracy": m["fp_avg_accuracy"],
                     "kl": m["kl"], "perplexity": m["perplexity"], "fp_perplexity": m["fp_perplexity"],
                     "mean_topk_agreement": m["routing"]["mean_topk_agreement"],
                     "accuracy": m["accuracy"], "fp_accuracy": m["fp_accuracy"],
                     "seconds": round(time.perf_counter() - t, 1)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="testbed-mixtral")
    ap.add_argument("--limit", type=int, default=100, help="items per task")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    home = Path(os.environ.get("MOEQ_HOME", Path.home() / ".moeq"))
    ctx = RunContext(zoo_dir=home / "zoo", cache_dir=home / "cache")
    path = resolve_model(args.model, ctx)
    model, tok = load_model(path, ctx)
    meta_file = path / "moeq_testbed.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    spec = specialization(MoEModel(model), tok)
    damage = rtn_damage(args.model, ctx, args.limit)
    report = {"model": args.model, "build_s": meta.get("build_s"), "parameters": meta.get("parameters"),
              "specialization": spec, "rtn": damage}
    fp = damage[0]
    print(f"# {args.model}: {meta.get('parameters')} parameters, built in {meta.get('build_s')} s")
    print(f"FP perplexity {fp['fp_perplexity']:.3f}, FP avg accuracy {fp['fp_avg_accuracy']:.3f}")
    print("\n| task | FP acc |\n|---|---|")
    for task, acc in fp["fp_accuracy"].items():
        print(f"| {task} | {acc:.3f} |")
    print(f"\nexpert-load entropy (bits; uniform = {spec['uniform_bits']:.2f}), mean over MoE layers:")
    for domain, per_layer in spec["entropy_bits"].items():
        vals = list(per_layer.values())
        print(f"  {domain:<5} {sum(vals) / len(vals):.2f}   per layer {vals}")
    print("\n| RTN per-channel | avg acc | KL | ppl | top-k agreement |\n|---|---|---|---|---|")
    for row in damage:
        print(f"| W{row['bits']} | {row['avg_accuracy']:.3f} | {row['kl']:.4f} | {row['perplexity']:.3f} | "
              f"{row['mean_topk_agreement']:.3f} |")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
