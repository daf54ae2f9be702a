"""Shared helpers for the benchmark scripts: run recipes through the API, print markdown, write JSON."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from moeq.quant_core.api import run  # noqa: E402
from moeq.quant_core.context import RunContext  # noqa: E402


def standard_args(doc: str, model: str = "testbed-mixtral"):
    """argparse parser with the options every ablation script shares (--model --samples --limit --out)."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--model", default=model)
    ap.add_argument("--samples", type=int, default=64, help="calibration sequences of 256 tokens")
    ap.add_argument("--limit", type=int, default=50, help="items per evaluation task")
    ap.add_argument("--out", type=Path)
    return ap


def context(device: str = "auto") -> RunContext:
    home = Path(os.environ.get("MOEQ_HOME", Path.home() / ".moeq"))
    return RunContext(zoo_dir=home / "zoo", cache_dir=home / "cache", device=device)


def run_recipe(recipe: dict, ctx: RunContext) -> tuple[dict, float]:
    t = time.perf_counter()
    result = run(recipe, ctx)
    return result, time.perf_counter() - t


def headline(result: dict) -> dict:
    m = result["metrics"]
    routing = m.get("routing") or {}
    return {"avg_accuracy": m.get("avg_accuracy"), "fp_avg_accuracy": m.get("fp_avg_accuracy"), "kl": m.get("kl"),
            "perplexity": m.get("perplexity"), "fp_perplexity": m.get("fp_perplexity"),
            "mean_topk_agreement": routing.get("mean_topk_agreement"),
            "avg_weight_bits": result["bits"]["avg_weight_bits"], "timings": result["timings"]}


def fmt(v, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


def print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """Markdown table; columns are (header, key, format spec)."""
    print("| " + " | ".join(h for h, _, _ in columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(fmt(row.get(k), f) if f else str(row.get(k)) for _, k, f in columns) + " |")


def write_json(path: Path | None, payload: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=1, default=str))
