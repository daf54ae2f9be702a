"""Task item types shared by the testbed generator, local task files and the scorers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MCItem:
    """Multiple choice: score each `context + choice` by log-likelihood of the choice."""

    context: str
    choices: tuple[str, ...]
    gold: int


@dataclass(frozen=True)
class GenItem:
    """Generation: greedy continuation of `prompt` must equal `answer` up to the `stop` string."""

    prompt: str
    answer: str
    stop: str = "\n"
    max_new_tokens: int = 32


@dataclass(frozen=True)
class Task:
    name: str
    kind: Literal["mc", "gen"]
    items: tuple[MCItem, ...] | tuple[GenItem, ...]
    domain: str = ""
    chance: float = 0.0  # accuracy of random guessing, for reports
