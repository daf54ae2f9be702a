"""Task accuracy: multiple-choice log-likelihood (acc, acc_norm) and greedy exact-match generation.

MC scoring follows lm-evaluation-harness: each choice's summed log-probability given the context;
acc_norm divides by the choice's length in bytes. Generation decodes greedily until the stop string.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from moeq.quant_core.context import ProgressFn
from moeq.quant_core.evaluate.outcomes import item_ids
from moeq.quant_core.evaluate.scoring import greedy_generate, loglikelihoods
from moeq.quant_core.evaluate.task_types import Task


@dataclass(frozen=True)
class TaskScore:
    name: str
    kind: str
    acc: float
    acc_norm: float | None
    stderr: float
    n: int
    chance: float
    correct: tuple[bool, ...] = ()  # per item, for per-item mixtures (MoQE) and paired comparisons
    item_ids: tuple[str, ...] = ()  # per item, its content id (evaluate.outcomes.item_ids)


def _stderr(acc: float, n: int) -> float:
    return math.sqrt(acc * (1 - acc) / n) if n else 0.0


def _mc_score(task: Task, ll: list[tuple[float, bool]]) -> TaskScore:
    """Accuracy of one MC task from the log-likelihoods of its (item, choice) pairs in order."""
    items = list(task.items)
    it_ll = iter(ll)
    correct, hits_norm = [], 0
    for it in items:
        scores = [next(it_ll)[0] for _ in it.choices]
        lengths = [max(1, len(c.encode("utf-8"))) for c in it.choices]
        correct.append(max(range(len(scores)), key=scores.__getitem__) == it.gold)
        hits_norm += int(max(range(len(scores)), key=lambda c: scores[c] / lengths[c]) == it.gold)
    acc = sum(correct) / len(items)
    return TaskScore(task.name, "mc", acc, hits_norm / len(items), _stderr(acc, len(items)), len(items), task.chance,
                     tuple(correct), item_ids(items))


def _gen_score(task: Task, outputs: list[str]) -> TaskScore:
    correct = [o.strip() == it.answer.strip() for it, o in zip(task.items, outputs)]
    acc = sum(correct) / len(correct)
    return TaskScore(task.name, "gen", acc, None, _stderr(acc, len(correct)), len(correct), task.chance,
                     tuple(correct), item_ids(task.items))


def score_mc(model, tokenizer, task: Task, device) -> TaskScore:
    pairs = [(it.context, c) for it in task.items for c in it.choices]
    return _mc_score(task, loglikelihoods(model, tokenizer, pairs, device))


def score_gen(model, tokenizer, task: Task, device) -> TaskScore:
    return _gen_score(task, _generate_all(model, tokenizer, list(task.items), device))


def _generate_all(model, tokenizer, items: list, device) -> list[str]:
    """Greedy outputs for generation items, batched by (stop, max_new_tokens) and prompt length."""
    outs = [""] * len(items)
    by_stop: dict[tuple[str, int], list[int]] = {}
    for i, it in enumerate(items):
        by_stop.setdefault((it.stop, it.max_new_tokens), []).append(i)
    for (stop, max_new), idxs in by_stop.items():
        texts = greedy_generate(model, tokenizer, [items[i].prompt for i in idxs], max_new, [stop] if stop else [],
                                device)
        for i, o in zip(idxs, texts):
            outs[i] = o
    return outs


def score_tasks(model, tokenizer, tasks: list[Task], device, progress: ProgressFn | None = None) -> list[TaskScore]:
    """Every task scored, in their order; all multiple-choice pairs share one batched pass (sorted by
    length across tasks) and all generation prompts one KV-cached greedy pass."""
    live = [t for t in tasks if t.items]
    mc = [t for t in live if t.kind == "mc"]
    gen = [t for t in live if t.kind != "mc"]
    report = progress or (lambda stage, f: None)
    scores: dict[int, TaskScore] = {}  # by id(task): names may repeat
    if mc:
        report(f"evaluate: {len(mc)} multiple-choice task(s)", 0.0)
        pairs = [(it.context, c) for t in mc for it in t.items for c in it.choices]
        ll = loglikelihoods(model, tokenizer, pairs, device)
        at = 0
        for t in mc:
            n = sum(len(it.choices) for it in t.items)
            scores[id(t)] = _mc_score(t, ll[at:at + n])
            at += n
    if gen:
        report(f"evaluate: {len(gen)} generation task(s)", len(mc) / len(live))
        items = [it for t in gen for it in t.items]
        outs = _generate_all(model, tokenizer, items, device)
        at = 0
        for t in gen:
            scores[id(t)] = _gen_score(t, outs[at:at + len(t.items)])
            at += len(t.items)
    report("evaluate: tasks done", 1.0)
    return [scores[id(t)] for t in live]


def mixed_score(scores: list[TaskScore], picks: list[int]) -> TaskScore:
    """One task as a per-item mixture: item i counts as `scores[picks[i]]` answered it (MoQE's routed
    mixture of variants); acc_norm is not mixed (None)."""
    first = scores[0]
    correct = tuple(scores[k].correct[i] for i, k in enumerate(picks))
    acc = sum(correct) / len(correct)
    return TaskScore(first.name, first.kind, acc, None, _stderr(acc, len(correct)), len(correct), first.chance,
                     correct, first.item_ids)
