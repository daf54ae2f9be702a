"""Resolve `eval.tasks` names to Task lists: "testbed" (generated held-out tasks) or "file:<path>"."""

from __future__ import annotations

import json
from pathlib import Path

from moeq.contract.errors import RecipeError
from moeq.quant_core.evaluate.task_types import GenItem, MCItem, Task


def load_task_file(path: Path) -> Task:
    """A JSONL file: one item per line, {"type": "mc", "context", "choices", "gold"} or
    {"type": "gen", "prompt", "answer", ["stop", "max_new_tokens"]}; all lines of one type."""
    items = []
    kinds = set()
    from moeq.contract.sources import MAX_TASK_FILE_BYTES, read_capped

    data = read_capped(Path(path), "eval.tasks", MAX_TASK_FILE_BYTES + 1)
    if len(data) > MAX_TASK_FILE_BYTES:
        raise RecipeError("eval.tasks", f"task file {path} is larger than {MAX_TASK_FILE_BYTES >> 20} MB")
    lines = data.decode("utf-8", errors="replace").splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            kind = row.get("type", "mc")
            if kind == "mc":
                items.append(MCItem(row["context"], tuple(row["choices"]), int(row["gold"])))
            elif kind == "gen":
                items.append(GenItem(row["prompt"], row["answer"], row.get("stop", "\n"),
                                     int(row.get("max_new_tokens", 32))))
            else:
                raise ValueError(f"unknown type {kind!r}")
        except (ValueError, KeyError, TypeError) as exc:
            raise RecipeError("eval.tasks", f"{path}:{n}: malformed task line ({exc})") from None
        kinds.add(kind)
    if len(kinds) != 1:
        raise RecipeError("eval.tasks", f"{path}: needs items of exactly one type, found {sorted(kinds) or 'none'}")
    kind = kinds.pop()
    chance = sum(1 / len(i.choices) for i in items) / len(items) if kind == "mc" else 0.0
    return Task(name=Path(path).stem, kind=kind, items=tuple(items), domain="file", chance=chance)


def resolve_tasks(names: tuple[str, ...], limit: int | None, seed: int = 0) -> list[Task]:
    tasks: list[Task] = []
    for name in names:
        if name == "testbed":
            from moeq.quant_core.evaluate.testbed_tasks import eval_tasks

            tasks.extend(eval_tasks(seed=seed, n_per_task=limit or 100))
        elif name.startswith("lm_eval:"):
            continue  # scored by the lm-evaluation-harness adapter
        elif name.startswith("file:"):
            task = load_task_file(Path(name[5:]).expanduser())
            tasks.append(Task(task.name, task.kind, task.items[:limit] if limit else task.items,
                              task.domain, task.chance))
        else:
            raise RecipeError("eval.tasks", f"unknown task source {name!r} (use 'testbed', 'file:<path.jsonl>' or 'lm_eval:<task>')")
    return tasks
