"""One pass over evaluation windows collecting what FP-vs-Q comparisons need.

Per window batch: token NLL (perplexity), next-token log-probs on the first `kl_tokens` positions
(KL), and per MoE layer the recorded dispatch (routing agreement, routing KL, expert load).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from quant_core.adapters.dispatch import Dispatch, DispatchRecorder
from quant_core.adapters.model import MoEModel
from quant_core.context import ProgressFn


@dataclass
class ProbeResult:
    nll_sum: float
    n_tokens: int
    logprobs: torch.Tensor | None  # [K, vocab] float16 on CPU, first kl_tokens predicted positions
    dispatch: dict[int, Dispatch]  # per MoE layer, all window tokens in order

    @property
    def perplexity(self) -> float:
        return float(torch.exp(torch.tensor(self.nll_sum / max(1, self.n_tokens))))


def kl_token_budget(vocab: int, requested: int, max_bytes: int = 512 * 2**20) -> int:
    """Cap the number of stored distributions so they fit in `max_bytes` as float16."""
    return max(0, min(requested, max_bytes // (2 * max(1, vocab))))


@torch.no_grad()
def probe(moe: MoEModel, windows: torch.Tensor, *, batch_size: int = 8, kl_tokens: int = 4096,
          routing: bool = True, device: torch.device | None = None,
          progress: ProgressFn | None = None) -> ProbeResult:
    """Run the model over `windows` [N, S] (no padding) and collect NLL, log-probs and dispatch."""
    model = moe.model
    device = device or next(model.parameters()).device
    kl_left = kl_token_budget(model.config.vocab_size, kl_tokens)
    nll_sum, n_tokens = 0.0, 0
    kept: list[torch.Tensor] = []
    recorder = DispatchRecorder(moe, keep_inputs=False) if routing else None
    if recorder is not None:
        recorder.__enter__()
    try:
        for b0 in range(0, windows.shape[0], batch_size):
            ids = windows[b0:b0 + batch_size].to(device)
            logits = model(input_ids=ids, use_cache=False).logits.float()
            logp = F.log_softmax(logits[:, :-1], dim=-1)
            target = ids[:, 1:]
            nll_sum += float(-logp.gather(-1, target[..., None]).sum())
            n_tokens += target.numel()
            if kl_left > 0:
                flat = logp.reshape(-1, logp.shape[-1])[:kl_left]
                kept.append(flat.to("cpu", torch.float16))
                kl_left -= flat.shape[0]
            if progress is not None:
                progress("evaluate: perplexity/routing", min(1.0, (b0 + batch_size) / windows.shape[0]))
    finally:
        if recorder is not None:
            recorder.__exit__(None, None, None)
    dispatch = {i: recorder.take(i) for i in recorder.layers} if recorder is not None else {}
    return ProbeResult(nll_sum, n_tokens, torch.cat(kept) if kept else None, dispatch)
