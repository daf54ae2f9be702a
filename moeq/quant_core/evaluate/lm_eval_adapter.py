"""Optional bridge to lm-evaluation-harness (`pip install moeq[lmeval]`): score any harness task —
including tasks defined from local files via an include path — on a (quantized) model in memory.

Only names in the task manager's registry reach lm-eval (its installed tasks, or the confined include
folder's): lm-eval itself would also load a YAML file path or a folder given as a task name."""

from __future__ import annotations

import math
from pathlib import Path

from moeq.contract.errors import RecipeError
from moeq.contract.sources import check_lm_eval_name
from moeq.quant_core.evaluate.scoring import greedy_generate, loglikelihoods
from moeq.quant_core.evaluate.tasks import TaskScore


def _lm_class():
    try:
        from lm_eval.api.model import LM
    except ImportError:
        raise RecipeError("eval.tasks", "lm_eval:* tasks need lm-evaluation-harness: pip install 'moeq[lmeval]'") from None

    class MoeqLM(LM):
        """lm-eval model interface over an in-memory HF causal LM."""

        def __init__(self, model, tokenizer, device, batch_size: int = 32) -> None:
            super().__init__()
            self.model, self.tokenizer, self.device_, self.batch = model, tokenizer, device, batch_size

        def loglikelihood(self, requests):
            return loglikelihoods(self.model, self.tokenizer, [r.args for r in requests], self.device_, self.batch)

        def loglikelihood_rolling(self, requests):
            return [loglikelihoods(self.model, self.tokenizer, [("", r.args[0])], self.device_, 1)[0][0]
                    for r in requests]

        def generate_until(self, requests):
            out = []
            for r in requests:
                ctx, kwargs = r.args
                until = kwargs.get("until") or []
                until = [until] if isinstance(until, str) else list(until)
                max_new = int(kwargs.get("max_gen_toks", 32))
                out.append(greedy_generate(self.model, self.tokenizer, [ctx], max_new, until, self.device_)[0])
            return out

    return MoeqLM


def run_lm_eval(model, tokenizer, task_names: list[str], device, limit: int | None = None,
                include_path: str | None = None) -> list[TaskScore]:
    """Evaluate harness tasks; returns acc (and acc_norm when reported) per task."""
    MoeqLM = _lm_class()
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    if include_path is not None and not Path(include_path).exists():
        raise RecipeError("eval.lm_eval_include", f"{include_path} does not exist")
    for name in task_names:  # again in the worker: a stored or forged recipe skipped admission
        check_lm_eval_name(name, "eval.tasks")
    manager = TaskManager(include_path=include_path, include_defaults=include_path is None)
    unknown = [name for name in task_names if name not in manager.task_index]
    if unknown:
        where = f"the task folder {include_path}" if include_path is not None else "lm-eval's installed registry"
        raise RecipeError("eval.tasks", f"lm_eval:{unknown[0][:80]!r} is not a task, group or tag in {where}")
    try:
        out = simple_evaluate(model=MoeqLM(model, tokenizer, device), tasks=task_names, limit=limit,
                              task_manager=manager, log_samples=False, bootstrap_iters=0)
    except (KeyError, ValueError) as exc:
        raise RecipeError("eval.tasks", f"lm-eval could not run {task_names}: {exc}") from None
    scores = []
    for name in task_names:
        res = out["results"].get(name, {})
        acc = res.get("acc,none", res.get("exact_match,none"))
        if acc is None:
            raise RecipeError("eval.tasks", f"lm-eval task {name} reported no acc/exact_match metric")
        n = int(out.get("n-samples", {}).get(name, {}).get("effective", 0)) or 1
        stderr = res.get("acc_stderr,none")
        stderr = stderr if isinstance(stderr, float) else math.sqrt(acc * (1 - acc) / n)
        scores.append(TaskScore(name, "lm_eval", float(acc), res.get("acc_norm,none"), float(stderr), n, 0.0))
    return scores
