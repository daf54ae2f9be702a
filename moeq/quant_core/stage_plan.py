"""How much of the progress bar each pipeline stage gets, from measured stage costs.

The last measured seconds of each stage are kept per model (and weight method) in the cache
directory; a model never run before uses DEFAULT_COSTS (measured on testbed-mixtral W4 GPTQ with
default evaluation, benchmarks/turnaround.py). A stage that will be skipped (the FP evaluation when it
is cached) gets no share, so the bar moves at a steady pace and "quantize: done" is not 75 %.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# A stage table is an ordered dict stage → default seconds: its keys are the stages in run order.
# Seconds of the cold run in benchmarks/results/turnaround-loaded.md (a loaded machine: only the
# ratios matter); "save" was not part of that run and is an assumption (about the load time)
DEFAULT_COSTS = {"load": 24.0, "fp_evaluate": 418.0, "quantize": 207.0, "evaluate": 356.0, "save": 24.0}
# A MoQE run: its recipe variants (each calibrated, quantized and evaluated) are one stage, the router's
# training and the mixture's evaluation another; seconds of benchmarks/results/moqe-mixtral-w2.json
# (4 variants at W2 on a loaded machine: only the ratios matter)
MOQE_DEFAULT_COSTS = {"load": 19.1, "fp_evaluate": 12.5, "variants": 136.2, "router": 129.2}
FILE = "stage_costs.json"


@dataclass(frozen=True)
class StagePlan:
    spans: dict[str, tuple[float, float]]  # stage → (start, end) fraction of the whole run

    def span(self, stage: str) -> tuple[float, float]:
        return self.spans[stage]


def plan(costs: dict[str, float], skip: set[str], defaults: dict[str, float] = DEFAULT_COSTS) -> StagePlan:
    weights = {s: (0.0 if s in skip else max(0.0, float(costs.get(s, d)))) for s, d in defaults.items()}
    total = sum(weights.values()) or 1.0
    spans, at = {}, 0.0
    for s in defaults:
        end = at + weights[s] / total
        spans[s] = (at, min(1.0, end))
        at = end
    return StagePlan(spans)


def _key(model: str, method: str) -> str:
    return f"{model}|{method}"


def load_costs(cache_dir: Path, model: str, method: str,
               defaults: dict[str, float] = DEFAULT_COSTS) -> dict[str, float]:
    path = Path(cache_dir) / FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return dict(defaults)
    return {**defaults, **data.get(_key(model, method), {})}


def record_costs(cache_dir: Path, model: str, method: str, measured: dict[str, float],
                 defaults: dict[str, float] = DEFAULT_COSTS) -> None:
    """Remember this run's stage seconds for the next run of the same model and method (best effort)."""
    path = Path(cache_dir) / FILE
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        data = {}
    entry = data.get(_key(model, method), {})
    entry.update({k: round(float(v), 3) for k, v in measured.items() if k in defaults and v > 0})
    data[_key(model, method)] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError as exc:
        log.warning("stage costs not recorded: %s", exc)
