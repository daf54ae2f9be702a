"""Token windows for calibration and evaluation from a text source.

Sources: "auto"/"testbed" (the project's generated corpus, split "calib" or "heldout"), "random"
(uniform random non-special tokens) and "file:<path>" (a local UTF-8 text file).
"""

from __future__ import annotations

import torch

from moeq.contract.errors import CalibrationError

CHARS_PER_TOKEN_GUESS = 4  # for subword tokenizers; the char tokenizer uses 1


def _text(source: str, split: str, n_chars: int, seed: int) -> str:
    if source in ("auto", "testbed"):
        from moeq.quant_core.zoo.corpus import text_stream

        return text_stream(seed, n_chars, split)
    if source.startswith("file:"):  # resolved and confined to the data roots by moeq.contract.sources
        from moeq.contract.sources import read_text_file

        return read_text_file(source[5:], "source", max_bytes=4 * n_chars + 4096)
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


def token_windows(source: str, split: str, tokenizer, n: int, seq_len: int, seed: int) -> torch.Tensor:
    """`n` non-overlapping windows [n, seq_len]; each starts with BOS when the tokenizer has one."""
    if source == "random":
        return random_windows(tokenizer, n, seq_len, seed)
    bos = tokenizer.bos_token_id
    body = seq_len - (1 if bos is not None else 0)
    needed = n * body
    chars = needed * (1 if len(tokenizer) <= 256 else CHARS_PER_TOKEN_GUESS) + 1024
    text = _text(source, split, chars, seed)
    if not text.strip():
        raise CalibrationError(f"text source {source!r} is empty")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) < body:
        raise CalibrationError(f"text source {source!r} has {len(ids)} tokens; one window of {seq_len} needs {body}")
    n_avail = min(n, len(ids) // body)
    stream = torch.tensor(ids[: n_avail * body], dtype=torch.long).reshape(n_avail, body)
    if bos is not None:
        stream = torch.cat([torch.full((n_avail, 1), bos, dtype=torch.long), stream], dim=1)
    return stream
