"""The "testbed" evaluation tasks: held-out multiple-choice and generation items for every domain
of the generated corpus (moeq.quant_core.zoo.corpus makes the examples; this file decides what is asked)."""

from __future__ import annotations

from moeq.quant_core.evaluate.task_types import GenItem, MCItem, Task
from moeq.quant_core.zoo.corpus import DOMAINS, DOMAINS_SPEC, split_rng


def eval_tasks(seed: int = 0, n_per_task: int = 100) -> list[Task]:
    """Held-out tasks per domain: multiple choice (gold among distractors) and/or exact generation."""
    tasks = []
    for d in DOMAINS_SPEC:
        r = split_rng(seed, "heldout", stream=100 + DOMAINS.index(d.name))
        examples = [d.make(r) for _ in range(n_per_task)]
        if d.task in ("mc", "both"):
            items = []
            for ex in examples:
                choices = [ex.answer, *ex.distractors]
                r.shuffle(choices)
                items.append(MCItem(ex.prompt, tuple(choices), choices.index(ex.answer)))
            chance = sum(1 / len(i.choices) for i in items) / len(items)
            tasks.append(Task(f"{d.name}_mc", "mc", tuple(items), d.name, chance))
        if d.task in ("gen", "both"):
            items = tuple(GenItem(ex.prompt, ex.answer, "\n", d.max_new_tokens) for ex in examples)
            tasks.append(Task(f"{d.name}_gen", "gen", items, d.name, 0.0))
    return tasks

