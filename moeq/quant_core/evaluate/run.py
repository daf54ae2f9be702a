"""Evaluate a model once: probe pass over held-out windows plus task scoring."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from moeq.quant_core.adapters.model import MoEModel
from moeq.quant_core.context import ProgressFn
from moeq.quant_core.evaluate.probe import ProbeResult, probe
from moeq.quant_core.evaluate.task_types import Task
from moeq.quant_core.evaluate.tasks import TaskScore, score_tasks
from moeq.quant_core.fingerprint import cache_key
from moeq.contract.recipe import EvalSpec

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


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:24]


def _evaluation_inputs(model_dir: Path, windows: torch.Tensor | None, tasks: list[Task] | None) -> dict:
    """What an evaluation reads besides the weights and the spec: the model directory's other files
    (tokenizer, generation config: name, size, mtime), the exact token windows and task items, and
    the versions of the libraries that compute it."""
    import transformers

    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in Path(model_dir).iterdir()
                   if p.is_file() and p.suffix != ".safetensors")
    out = {"files": files, "torch": torch.__version__, "transformers": transformers.__version__}
    if windows is not None:
        w = windows.detach().to("cpu", torch.long).contiguous()
        out["windows"] = [list(w.shape), _digest(w.numpy().tobytes())]
    if tasks is not None:
        out["tasks"] = _digest(repr(tasks).encode())
    return out


def fp_cache_path(cache_dir: Path, model_dir: Path, spec: EvalSpec, seed: int, device: torch.device,
                  windows: torch.Tensor | None = None, tasks: list[Task] | None = None) -> Path:
    key = cache_key(model_dir, eval=asdict(spec), seed=seed, device=str(device), version=3,
                    inputs=_evaluation_inputs(model_dir, windows, tasks))
    return Path(cache_dir) / "fp_eval" / f"{key}.pt"


def cached_fp_evaluation(cache_dir: Path, model_dir: Path, spec: EvalSpec, seed: int, device: torch.device,
                         compute, windows: torch.Tensor | None = None, tasks: list[Task] | None = None) -> EvalResult:
    """The FP reference evaluation of a model, computed once per (model files, eval spec, seed, and
    — when given — the exact windows and tasks it scores; see `fp_cache_path`)."""
    path = fp_cache_path(cache_dir, model_dir, spec, seed, device, windows, tasks)
    if path.is_file():
        try:
            return torch.load(path, weights_only=False)
        except (OSError, RuntimeError, EOFError) as exc:
            log.warning("ignoring unreadable FP evaluation cache %s: %s", path, exc)
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.stem, suffix=".tmp", dir=path.parent)  # concurrent runs: own file each
    os.close(fd)
    torch.save(result, tmp)
    os.replace(tmp, path)
    return result


def evaluate_model(moe: MoEModel, tokenizer, windows: torch.Tensor, tasks: list[Task], spec: EvalSpec,
                   device: torch.device, progress: ProgressFn) -> EvalResult:
    t0 = time.perf_counter()
    p = probe(moe, windows, kl_tokens=spec.kl_tokens, routing=spec.routing, device=device,
              progress=lambda s, f: progress(s, 0.5 * f))
    scores = score_tasks(moe.model, tokenizer, tasks, device, progress=lambda s, f: progress(s, 0.5 + 0.5 * f))
    harness = [t[len("lm_eval:"):] for t in spec.tasks if t.startswith("lm_eval:")]
    if harness:
        from moeq.quant_core.evaluate.lm_eval_adapter import run_lm_eval

        progress("evaluate: lm-eval tasks", 0.9)
        scores += run_lm_eval(moe.model, tokenizer, harness, device, spec.limit, spec.lm_eval_include)
    return EvalResult(p, scores, time.perf_counter() - t0)
