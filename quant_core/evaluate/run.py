"""Evaluate a model once: probe pass over held-out windows plus task scoring."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from quant_core.adapters.model import MoEModel
from quant_core.context import ProgressFn
from quant_core.evaluate.probe import ProbeResult, probe
from quant_core.evaluate.task_types import Task
from quant_core.evaluate.tasks import TaskScore, score_tasks
from quant_core.fingerprint import cache_key
from spec.recipe import EvalSpec

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    probe: ProbeResult
    tasks: list[TaskScore]
    seconds: float

    def accuracy(self) -> dict[str, float]:
        return {t.name: t.acc for t in self.tasks}

    def avg_accuracy(self) -> float | None:
        return sum(t.acc for t in self.tasks) / len(self.tasks) if self.tasks else None


def fp_cache_path(cache_dir: Path, model_dir: Path, spec: EvalSpec, seed: int, device: torch.device) -> Path:
    key = cache_key(model_dir, eval=asdict(spec), seed=seed, device=str(device), version=2)
    return Path(cache_dir) / "fp_eval" / f"{key}.pt"


def cached_fp_evaluation(cache_dir: Path, model_dir: Path, spec: EvalSpec, seed: int, device: torch.device,
                         compute) -> EvalResult:
    """The FP reference evaluation of a model, computed once per (model files, eval spec, seed)."""
    path = fp_cache_path(cache_dir, model_dir, spec, seed, device)
    if path.is_file():
        try:
            return torch.load(path, weights_only=False)
        except (OSError, RuntimeError, EOFError) as exc:
            log.warning("ignoring unreadable FP evaluation cache %s: %s", path, exc)
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(result, tmp)
    tmp.replace(path)
    return result


def evaluate_model(moe: MoEModel, tokenizer, windows: torch.Tensor, tasks: list[Task], spec: EvalSpec,
                   device: torch.device, progress: ProgressFn) -> EvalResult:
    t0 = time.perf_counter()
    p = probe(moe, windows, kl_tokens=spec.kl_tokens, routing=spec.routing, device=device,
              progress=lambda s, f: progress(s, 0.5 * f))
    scores = score_tasks(moe.model, tokenizer, tasks, device, progress=lambda s, f: progress(s, 0.5 + 0.5 * f))
    harness = [t[len("lm_eval:"):] for t in spec.tasks if t.startswith("lm_eval:")]
    if harness:
        from quant_core.evaluate.lm_eval_adapter import run_lm_eval

        progress("evaluate: lm-eval tasks", 0.9)
        scores += run_lm_eval(moe.model, tokenizer, harness, device, spec.limit, spec.lm_eval_include)
    return EvalResult(p, scores, time.perf_counter() - t0)
