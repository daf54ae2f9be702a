"""'did you mean …?' for a mistyped name (techniques, presets, recipe keys, zoo models)."""

from __future__ import annotations

import difflib
from typing import Iterable


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' — did you mean 'gptq'?' when a known name is close to `word`, else ''."""
    close = difflib.get_close_matches(str(word).lower(), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" — did you mean {close[0]!r}?" if close else ""
