"""Per-item and per-window outcomes a result keeps, so that two runs can be compared item by item
(moeq.contract.stats pairs them). Bounded: at most MAX_ITEMS items per task and MAX_WINDOWS windows
(the first ones, in evaluation order), see docs/results.md."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from moeq.quant_core.evaluate.probe import ProbeResult

MAX_ITEMS = 2000  # per task
MAX_WINDOWS = 1024


def _short(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def unique_ids(digests: list[str]) -> tuple[str, ...]:
    """Digests made unique within their list (a repeated item keeps its own id: `<digest>.<k>`)."""
    seen: dict[str, int] = {}
    out = []
    for d in digests:
        k = seen.get(d, 0)
        seen[d] = k + 1
        out.append(d if k == 0 else f"{d}.{k}")
    return tuple(out)


def item_ids(items) -> tuple[str, ...]:
    """A content id per task item: the same question (context, choices, gold / prompt, answer) has
    the same id in every run, whatever else the run's tasks hold."""
    return unique_ids([_short(repr(it).encode()) for it in items])


def window_ids(windows: torch.Tensor) -> tuple[str, ...]:
    """A content id per evaluation window (its token ids)."""
    w = windows.detach().to("cpu", torch.long).contiguous()
    return unique_ids([_short(row.numpy().tobytes()) for row in w])


def window_kl(fp: ProbeResult, q: ProbeResult) -> list[float]:
    """Mean KL(p_fp ‖ p_q) over each window's kept positions (the kl_tokens budget covers the first
    positions in window order; a window only partly covered counts its covered positions)."""
    if fp.logprobs is None or q.logprobs is None or q.window_nll is None or not len(q.window_nll):
        return []
    n = min(fp.logprobs.shape[0], q.logprobs.shape[0])
    p_log, q_log = fp.logprobs[:n].float(), q.logprobs[:n].float()
    per_token = (p_log.exp() * (p_log - q_log)).sum(-1)
    per_window = max(1, q.n_tokens // len(q.window_nll))
    return [float(c.mean()) for c in per_token.split(per_window)]


def _r(v: float) -> float:
    return float(f"{v:.6g}")


def task_outcomes(score) -> dict:
    """{"item_ids", "item_scores"} of one task score (empty when the scorer kept no per-item record,
    e.g. lm-eval tasks)."""
    if not score.item_ids or len(score.item_ids) != len(score.correct):
        return {"item_ids": [], "item_scores": []}
    return {"item_ids": list(score.item_ids[:MAX_ITEMS]), "item_scores": [int(c) for c in score.correct[:MAX_ITEMS]]}


def window_outcomes(fp: ProbeResult, q: ProbeResult) -> dict:
    """Per evaluation window: id, mean token NLL (perplexity = exp of the token-weighted mean) and mean
    KL(FP‖Q) where the KL budget covered it; `tokens` is the predicted positions per window."""
    if q.window_nll is None or not len(q.window_nll):
        return {"ids": [], "nll": [], "kl": [], "tokens": 0}
    per_window = max(1, q.n_tokens // len(q.window_nll))
    ids = list(q.window_ids[:MAX_WINDOWS])
    nll = [_r(float(v) / per_window) for v in q.window_nll[:MAX_WINDOWS]]
    return {"ids": ids if len(ids) == len(nll) else [], "nll": nll,
            "kl": [_r(v) for v in window_kl(fp, q)[:MAX_WINDOWS]], "tokens": per_window}
