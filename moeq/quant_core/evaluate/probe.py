"""One pass over evaluation windows collecting what FP-vs-Q comparisons need.

Per window batch: token NLL (perplexity; also summed per window, for MoQE's per-window mixture),
next-token log-probs on the first `kl_tokens` positions (KL), and per MoE layer the recorded dispatch
(routing agreement, routing KL, expert load).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from moeq.quant_core.adapters.dispatch import Dispatch, DispatchRecorder
from moeq.quant_core.adapters.model import MoEModel
from moeq.quant_core.context import ProgressFn
from moeq.quant_core.evaluate.forward import forward_many
from moeq.quant_core.evaluate.outcomes import window_ids


@dataclass
class ProbeResult:
    nll_sum: float
    n_tokens: int
    logprobs: torch.Tensor | None  # [K, vocab] float16 on CPU, first kl_tokens predicted positions
    dispatch: dict[int, Dispatch]  # per MoE layer, all window tokens in order
    window_nll: torch.Tensor | None = None  # [N] summed token NLL of each window (float64, CPU)
    window_ids: tuple[str, ...] = ()  # [N] content id of each window (evaluate.outcomes.window_ids)

    @property
    def perplexity(self) -> float:
        return float(torch.exp(torch.tensor(self.nll_sum / max(1, self.n_tokens))))


def kl_token_budget(vocab: int, requested: int, max_bytes: int = 512 * 2**20) -> int:
    """Cap the number of stored distributions so they fit in `max_bytes` as float16."""
    return max(0, min(requested, max_bytes // (2 * max(1, vocab))))


@torch.no_grad()
def probe(moe: MoEModel, windows: torch.Tensor, *, batch_size: int = 8, kl_tokens: int = 4096,
          routing: bool = True, device: torch.device | None = None,
          progress: ProgressFn | None = None, runner=None) -> ProbeResult:
    """Run the model over `windows` [N, S] (no padding) and collect NLL, log-probs and dispatch.
    `runner` (optional) streams the layers from disk instead of running `moe.model` in memory."""
    model = runner if runner is not None else moe.model
    device = device or next(moe.model.parameters()).device
    kl_left = kl_token_budget(moe.config.vocab_size, kl_tokens)
    acc = {"nll_sum": 0.0, "n_tokens": 0, "kl_left": kl_left}
    kept: list[torch.Tensor] = []
    per_window: list[torch.Tensor] = []
    batches = [windows[b0:b0 + batch_size] for b0 in range(0, windows.shape[0], batch_size)]

    def consume(j: int, logits: torch.Tensor) -> None:
        ids = batches[j].to(logits.device)
        logp = F.log_softmax(logits.float()[:, :-1], dim=-1)
        target = ids[:, 1:]
        nll = -logp.gather(-1, target[..., None])
        acc["nll_sum"] += float(nll.sum())
        per_window.append(nll[..., 0].double().sum(-1).cpu())
        acc["n_tokens"] += target.numel()
        if acc["kl_left"] > 0:
            flat = logp.reshape(-1, logp.shape[-1])[:acc["kl_left"]]
            kept.append(flat.to("cpu", torch.float16))
            acc["kl_left"] -= flat.shape[0]
        if progress is not None:
            progress("evaluate: perplexity/routing", min(1.0, (j + 1) * batch_size / windows.shape[0]))

    recorder = DispatchRecorder(moe, keep_inputs=False) if routing else None
    if recorder is not None:
        recorder.__enter__()
    try:
        forward_many(model, batches, consume, device)
    finally:
        if recorder is not None:
            recorder.__exit__(None, None, None)
    dispatch = {i: recorder.take(i) for i in recorder.layers} if recorder is not None else {}
    return ProbeResult(acc["nll_sum"], acc["n_tokens"], torch.cat(kept) if kept else None, dispatch,
                       torch.cat(per_window) if per_window else None, window_ids(windows))
