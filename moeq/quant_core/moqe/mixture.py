"""MoQE's routed mixture as an evaluation: on each held-out window (and each task item) the mixture
answers as the variant the router picked, so its probe — window NLL, next-token log-probs, expert
dispatch — and its task scores are gathered from the variants' own evaluations. The result builder then
treats it like any quantized model's evaluation (moeq.quant_core.result)."""

from __future__ import annotations

import torch

from moeq.quant_core.adapters.dispatch import Dispatch
from moeq.quant_core.evaluate.probe import ProbeResult
from moeq.quant_core.evaluate.run import EvalResult
from moeq.quant_core.evaluate.tasks import TaskScore, mixed_score


def _pick_rows(tensors: list[torch.Tensor], row_pick: torch.Tensor) -> torch.Tensor:
    """Row r of the output is row r of tensors[row_pick[r]] (all tensors the same shape)."""
    out = tensors[0].clone()
    for k, t in enumerate(tensors[1:], start=1):
        mask = row_pick == k
        out[mask] = t[mask]
    return out


def _mixed_dispatch(dispatches: list[Dispatch], token_pick: torch.Tensor) -> Dispatch:
    logits = None if any(d.logits is None for d in dispatches) else _pick_rows([d.logits for d in dispatches],
                                                                                  token_pick)
    return Dispatch(_pick_rows([d.index for d in dispatches], token_pick),
                    _pick_rows([d.weights for d in dispatches], token_pick), logits, None, dispatches[0].score)


def mixed_probe(probes: list[ProbeResult], picks: torch.Tensor, seq_len: int) -> ProbeResult:
    """The probe of the mixture that answers window w with variant picks[w] (windows of `seq_len` tokens:
    seq_len − 1 predicted positions and seq_len dispatched tokens each, in window order)."""
    window_nll = torch.stack([p.window_nll for p in probes], 1).gather(1, picks[:, None])[:, 0]
    logprobs = None
    if all(p.logprobs is not None for p in probes):
        rows = min(p.logprobs.shape[0] for p in probes)
        row_pick = picks[torch.arange(rows) // (seq_len - 1)]
        logprobs = _pick_rows([p.logprobs[:rows] for p in probes], row_pick)
    dispatch = {}
    if all(p.dispatch for p in probes):
        token_pick = picks.repeat_interleave(seq_len)
        dispatch = {i: _mixed_dispatch([p.dispatch[i] for p in probes], token_pick) for i in probes[0].dispatch}
    return ProbeResult(float(window_nll.sum()), probes[0].n_tokens, logprobs, dispatch, window_nll,
                       probes[0].window_ids)


def mixed_evaluation(evals: list[EvalResult], picks: torch.Tensor, seq_len: int,
                     task_picks: list[list[int]]) -> EvalResult:
    """The mixture's evaluation: windows routed by `picks`, task items of task t by `task_picks[t]`."""
    tasks: list[TaskScore] = [mixed_score([e.tasks[t] for e in evals], p) for t, p in enumerate(task_picks)]
    return EvalResult(mixed_probe([e.probe for e in evals], picks, seq_len), tasks, 0.0)


def oracle_perplexity(probes: list[ProbeResult]) -> float:
    """Perplexity when every window gets its best variant (the upper bound for any router)."""
    best = torch.stack([p.window_nll for p in probes], 1).min(1).values
    return float(torch.exp(best.sum() / probes[0].n_tokens))
