"""The parsers every numeric CLI argument goes through: a short line naming the problem, never
the (possibly 5000-character) text that was given (argparse echoes the value for a plain `type=int`)."""

from __future__ import annotations

import argparse
import math

MAX_CHARS = 40  # more than any integer or decimal a moeq option needs


def _shown(text: str) -> str:
    return repr(text) if len(text) <= MAX_CHARS else f"{len(text)} characters"


def whole_number(text: str) -> int:
    """`type=` for integer options."""
    if len(text) > MAX_CHARS:
        raise argparse.ArgumentTypeError(f"expected a whole number of at most {MAX_CHARS} digits, got {_shown(text)}")
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {_shown(text)}") from None


def decimal_number(text: str) -> float:
    """`type=` for decimal options (finite only)."""
    if len(text) > MAX_CHARS:
        raise argparse.ArgumentTypeError(f"expected a number of at most {MAX_CHARS} characters, got {_shown(text)}")
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {_shown(text)}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {_shown(text)}")
    return value
