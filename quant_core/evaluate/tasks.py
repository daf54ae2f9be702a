"""Task accuracy: multiple-choice log-likelihood (acc, acc_norm) and greedy exact-match generation.

MC scoring follows lm-evaluation-harness: each choice's summed log-probability given the context;
acc_norm divides by the choice's length in bytes. Generation decodes greedily until the stop string.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from quant_core.context import ProgressFn
from quant_core.evaluate.scoring import greedy_generate, loglikelihoods
from quant_core.evaluate.task_types import Task


@dataclass(frozen=True)
class TaskScore:
    name: str
    kind: str
    acc: float
    acc_norm: float | None
    stderr: float
    n: int
    chance: float
    correct: tuple[bool, ...] = ()  # per item, for per-item mixtures (MoQE)


def _stderr(acc: float, n: int) -> float:
    return math.sqrt(acc * (1 - acc) / n) if n else 0.0


def score_mc(model, tokenizer, task: Task, device) -> TaskScore:
    items = list(task.items)
    pairs = [(it.context, c) for it in items for c in it.choices]
    ll = iter(loglikelihoods(model, tokenizer, pairs, device))
    correct, hits_norm = [], 0
    for it in items:
        scores = [next(ll)[0] for _ in it.choices]
        lengths = [max(1, len(c.encode("utf-8"))) for c in it.choices]
        correct.append(max(range(len(scores)), key=scores.__getitem__) == it.gold)
        hits_norm += int(max(range(len(scores)), key=lambda c: scores[c] / lengths[c]) == it.gold)
    acc = sum(correct) / len(items)
    return TaskScore(task.name, "mc", acc, hits_norm / len(items), _stderr(acc, len(items)), len(items), task.chance,
                     tuple(correct))


def score_gen(model, tokenizer, task: Task, device) -> TaskScore:
    items = list(task.items)
    correct = [False] * len(items)
    by_stop: dict[tuple[str, int], list[int]] = {}
    for i, it in enumerate(items):
        by_stop.setdefault((it.stop, it.max_new_tokens), []).append(i)
    for (stop, max_new), idxs in by_stop.items():
        outs = greedy_generate(model, tokenizer, [items[i].prompt for i in idxs], max_new, [stop] if stop else [], device)
        for i, o in zip(idxs, outs):
            correct[i] = o.strip() == items[i].answer.strip()
    acc = sum(correct) / len(items)
    return TaskScore(task.name, "gen", acc, None, _stderr(acc, len(items)), len(items), task.chance, tuple(correct))


def score_tasks(model, tokenizer, tasks: list[Task], device, progress: ProgressFn | None = None) -> list[TaskScore]:
    scores = []
    for i, task in enumerate(tasks):
        if not task.items:
            continue
        scorer = score_mc if task.kind == "mc" else score_gen
        scores.append(scorer(model, tokenizer, task, device))
        if progress is not None:
            progress(f"evaluate: task {task.name}", (i + 1) / len(tasks))
    return scores
