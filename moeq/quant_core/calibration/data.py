"""Token windows for calibration and evaluation from a text source.

Sources: "auto"/"testbed" (the project's generated corpus, split "calib" or "heldout"), "random"
(uniform random non-special tokens) and "file:<path>" (a local UTF-8 text file).

A text source is one token stream (a file's tokens from its start; the corpus's tokens for a split and
seed); a draw reads whole windows from a token offset on and says which range it read (`TextRange`), so
the streams of a run (moeq.quant_core.streams) can be laid out side by side and checked disjoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from moeq.contract.errors import CalibrationError

CHARS_PER_TOKEN_GUESS = 4  # for subword tokenizers; the char tokenizer uses 1


@dataclass(frozen=True)
class TextRange:
    """The body tokens [start, end) of a source's token stream one draw read (BOS, added to each window,
    is not the source's and not counted); `windows` of the `requested` fit."""

    source: str
    split: str | None
    seed: int | None
    start: int
    end: int
    windows: int
    requested: int
    source_tokens: int | None  # how many tokens the source holds (a file read to its end), else None

    def record(self) -> dict:
        return {"source": self.source, "split": self.split, "seed": self.seed, "token_range": [self.start, self.end],
                "windows": self.windows, "requested_windows": self.requested, "source_tokens": self.source_tokens}

    def overlaps(self, other: "TextRange") -> bool:
        same = self.source == other.source and (self.source.startswith("file:") or
                                                (self.split, self.seed) == (other.split, other.seed))
        return same and self.source != "random" and self.start < other.end and other.start < self.end


def _text(source: str, split: str, n_chars: int, seed: int) -> tuple[str, bool]:
    """(text of at least `n_chars` characters where the source has them, whether that is all of it)."""
    if source in ("auto", "testbed"):
        from moeq.quant_core.zoo.corpus import text_stream

        return text_stream(seed, n_chars, split), False
    if source.startswith("file:"):  # resolved and confined to the data roots by moeq.contract.sources
        from moeq.contract.sources import MAX_TEXT_BYTES, read_text_file

        cap = min(4 * n_chars + 4096, MAX_TEXT_BYTES)
        text = read_text_file(source[5:], "source", max_bytes=cap)
        return text, cap == MAX_TEXT_BYTES or os.stat(source[5:]).st_size <= cap
    raise CalibrationError(f"unknown text source {source!r}")


def _special_ids(tokenizer) -> set[int]:
    return {i for i in (tokenizer.all_special_ids or []) if i is not None}


def random_windows(tokenizer, n: int, seq_len: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    vocab = len(tokenizer)
    allowed = torch.tensor([i for i in range(vocab) if i not in _special_ids(tokenizer)])
    ids = allowed[torch.randint(0, len(allowed), (n, seq_len), generator=gen)]
    if tokenizer.bos_token_id is not None:
        ids[:, 0] = tokenizer.bos_token_id
    return ids


def body_tokens(tokenizer, seq_len: int) -> int:
    """Source tokens one window of `seq_len` reads (BOS, when the tokenizer has one, is added)."""
    return seq_len - (1 if tokenizer.bos_token_id is not None else 0)


def _source_ids(source: str, split: str, tokenizer, end: int, seed: int) -> tuple[list[int], bool]:
    """The source's first tokens (at least `end` where it has them) and whether they are all it has."""
    chars = end * (1 if len(tokenizer) <= 256 else CHARS_PER_TOKEN_GUESS) + 1024
    while True:
        text, whole = _text(source, split, chars, seed)
        if not text.strip():
            raise CalibrationError(f"text source {source!r} is empty")
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) >= end or whole:
            return ids, whole
        chars *= 4  # fewer tokens per character than guessed: read further


def draw_windows(source: str, split: str, tokenizer, n: int, seq_len: int, seed: int,
                 start: int = 0) -> tuple[torch.Tensor, TextRange]:
    """Up to `n` consecutive windows [n, seq_len] from token `start` of the source on, each starting with
    BOS when the tokenizer has one, and the range they read. Fewer when the source ends sooner; none
    fit → CalibrationError."""
    if source == "random":
        return random_windows(tokenizer, n, seq_len, seed), TextRange("random", None, seed, 0, 0, n, n, None)
    bos = tokenizer.bos_token_id
    body = body_tokens(tokenizer, seq_len)
    ids, whole = _source_ids(source, split, tokenizer, start + n * body, seed)
    n_avail = max(0, min(n, (len(ids) - start) // body))
    if n_avail == 0:
        where = f" after the {start} tokens another part of the run reads" if start else ""
        raise CalibrationError(f"text source {source!r} has {len(ids)} tokens; one window of {seq_len} needs {body}"
                               f"{where}: give a longer source")
    stream = torch.tensor(ids[start:start + n_avail * body], dtype=torch.long).reshape(n_avail, body)
    if bos is not None:
        stream = torch.cat([torch.full((n_avail, 1), bos, dtype=torch.long), stream], dim=1)
    file = source.startswith("file:")
    rng = TextRange(source, None if file else split, None if file else seed, start, start + n_avail * body,
                    n_avail, n, len(ids) if whole else None)
    return stream, rng


def token_windows(source: str, split: str, tokenizer, n: int, seq_len: int, seed: int,
                  start: int = 0) -> torch.Tensor:
    """`n` non-overlapping windows [n, seq_len] (fewer when the source is shorter; see draw_windows)."""
    return draw_windows(source, split, tokenizer, n, seq_len, seed, start)[0]
