"""Can the model read the calibration and evaluation text? Metrics on text that is mostly unknown
tokens (or that the FP model predicts no better than uniform guessing) measure nothing; such runs get
`warnings` in their result.

Two signals: the share of unknown / byte-fallback tokens in the token windows, and the FP model's
perplexity against the uniform bound (perplexity = vocabulary size for a model that knows nothing).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

UNKNOWN_SHARE_WARN = 0.2  # more than this share of unknown/byte-fallback tokens: the text is not the model's
UNIFORM_RATIO_WARN = 0.5  # FP perplexity above this fraction of the vocabulary size: near-uniform guessing
_BYTE_TOKEN = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")
# `auto` text the model brings along: files with these names in its directory win over the testbed corpus
MODEL_TEXT_FILES = {"calib": ("calibration.txt", "text.txt"), "heldout": ("heldout.txt", "text.txt")}


def model_text_source(source: str, model_dir: Path | None, split: str) -> str:
    """`auto` → `file:<model dir>/<text file>` when the model ships its own text, else unchanged."""
    if source != "auto" or model_dir is None:
        return source
    for name in MODEL_TEXT_FILES[split]:
        path = Path(model_dir) / name
        if path.is_file():
            return f"file:{path}"
    return source


def _unknown_ids(tokenizer, ids: torch.Tensor) -> torch.Tensor:
    """Boolean mask of unknown or byte-fallback tokens among `ids`."""
    uniq = torch.unique(ids).tolist()
    bad = set()
    if tokenizer.unk_token_id is not None:
        bad.add(int(tokenizer.unk_token_id))
    for i, tok in zip(uniq, tokenizer.convert_ids_to_tokens(uniq)):
        if isinstance(tok, str) and _BYTE_TOKEN.match(tok):
            bad.add(int(i))
    if not bad:
        return torch.zeros_like(ids, dtype=torch.bool)
    return torch.isin(ids, torch.tensor(sorted(bad), dtype=ids.dtype))


def token_check(tokenizer, windows: torch.Tensor, source: str) -> dict:
    """{source, num_tokens, unknown_share} for the windows (special tokens such as BOS excluded)."""
    if source == "random" or windows.numel() == 0:
        return {"source": source, "num_tokens": int(windows.numel()), "unknown_share": None}
    special = torch.tensor(sorted({i for i in (tokenizer.all_special_ids or []) if i is not None}
                                  - {tokenizer.unk_token_id}), dtype=windows.dtype)
    body = windows[~torch.isin(windows, special)] if special.numel() else windows.flatten()
    share = float(_unknown_ids(tokenizer, body).float().mean()) if body.numel() else 0.0
    return {"source": source, "num_tokens": int(body.numel()), "unknown_share": round(share, 4)}


def text_warnings(calib: dict | None, evaluation: dict, fp_perplexity: float | None, vocab_size: int) -> list[str]:
    """Loud, specific sentences for text the model cannot read."""
    out = []
    for what, info in (("calibration", calib), ("evaluation", evaluation)):
        share = (info or {}).get("unknown_share")
        if share is not None and share > UNKNOWN_SHARE_WARN:
            out.append(f"{share:.0%} of the {what} text ({info['source']}) is unknown or byte-fallback tokens "
                       f"for this model's tokenizer: the {what} does not measure what it should; give text in "
                       f"the model's language with {'calibration' if what == 'calibration' else 'eval'}.source "
                       f"= 'file:<path>'")
    if evaluation.get("source") != "random" and fp_perplexity is not None and vocab_size > 0:
        if not fp_perplexity == fp_perplexity or fp_perplexity > UNIFORM_RATIO_WARN * vocab_size:
            out.append(f"the full-precision model's perplexity on the evaluation text is {fp_perplexity:.3g}, "
                       f"against {vocab_size} for uniform guessing: the model cannot read this text, so KL, "
                       f"agreement and perplexity on it mean little")
    return out
