"""MoEQuant Expert-Balanced Self-Sampling (EBSS): calibration text sampled from the model itself.

Batched beam search (width w) per sequence; each step every beam is extended by its w most likely
next tokens; a candidate's score is its mean token NLL plus σ/τ, where σ is the standard deviation
of the normalized per-expert token counts of the tokens routed so far, averaged over MoE layers.
The w lowest-scoring candidates survive. Sequence i starts from the i-th non-special vocabulary
token (after BOS). Uses the KV cache (reordered per step) and the dispatch recorder, so each step
costs one forward of one token per beam.
"""

from __future__ import annotations

import inspect
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from quant_core.adapters.dispatch import DispatchRecorder
from quant_core.adapters.model import MoEModel
from quant_core.context import RunContext
from quant_core.fingerprint import cache_key
from quant_core.recipe import CalibrationSpec

log = logging.getLogger(__name__)
ROWS_PER_BATCH = 64


def start_tokens(tokenizer, n: int) -> list[int]:
    special = set(tokenizer.all_special_ids or [])
    vocab = [i for i in range(len(tokenizer)) if i not in special]
    return [vocab[i % len(vocab)] for i in range(n)]


def usage_std(counts: torch.Tensor) -> torch.Tensor:
    """counts [rows, layers, n] → mean over layers of std over experts of normalized usage, [rows]."""
    usage = counts / counts.sum(-1, keepdim=True).clamp(min=1)
    return usage.std(dim=-1, unbiased=False).mean(dim=-1)


@torch.no_grad()
def _sample_group(moe: MoEModel, first: list[int], bos: int | None, length: int, width: int, tau: float,
                  device: torch.device, progress, sample: bool = False, gen: torch.Generator | None = None
                  ) -> torch.Tensor:
    from transformers import DynamicCache

    model = moe.model
    layers = sorted(moe.blocks)
    n_exp = max(b.num_experts for b in moe.blocks.values())
    seqs = len(first)
    rows = seqs * width
    prefix = [[bos, t] if bos is not None else [t] for t in first]
    plen = len(prefix[0])
    ids = torch.tensor([p for p in prefix for _ in range(width)], device=device)  # [rows, P]
    nll = torch.zeros(rows, device=device)
    counts = torch.zeros(rows, len(layers), n_exp, device=device)
    alive = torch.zeros(seqs, width, dtype=torch.bool, device=device)
    alive[:, 0] = True  # all beams start identical: keep one until the first expansion
    cache = DynamicCache(config=model.config)
    # transformers renamed `past_key_values` to `cache` (the old name goes away in 5.40)
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    step_input = ids
    with DispatchRecorder(moe, device=None) as rec:
        while ids.shape[1] < length:
            rec.clear()
            logits = model(input_ids=step_input, use_cache=True, **{cache_kw: cache}).logits[:, -1].float()
            for li, layer in enumerate(layers):
                idx = rec.take(layer).index.reshape(rows, -1)
                counts[:, li].scatter_add_(1, idx, torch.ones_like(idx, dtype=counts.dtype))
            logp = F.log_softmax(logits, dim=-1)
            if sample:  # candidates drawn from p (without replacement) instead of the w most likely
                top_tok = torch.multinomial(logp.exp(), width, replacement=False, generator=gen)
                top_lp = logp.gather(1, top_tok)
            else:
                top_lp, top_tok = logp.topk(width, dim=-1)  # [rows, w]
            cand_nll = (nll[:, None] - top_lp) / (ids.shape[1] - plen + 1)
            score = cand_nll + (usage_std(counts) / tau)[:, None]
            score = score.reshape(seqs, width * width)
            score = score.masked_fill(~alive.repeat_interleave(width, dim=1), float("inf"))
            best = score.topk(width, dim=-1, largest=False).indices  # [seqs, w]
            parent = (best // width) + torch.arange(seqs, device=device)[:, None] * width
            parent = parent.reshape(-1)
            token = top_tok.reshape(seqs, width * width).gather(1, best).reshape(-1)
            nll = nll[parent] - top_lp.reshape(seqs, width * width).gather(1, best).reshape(-1)
            counts = counts[parent]
            ids = torch.cat([ids[parent], token[:, None]], dim=1)
            cache.reorder_cache(parent)
            alive = torch.isfinite(score.gather(1, best))
            step_input = token[:, None]
            progress(ids.shape[1] / length)
    final = nll / max(1, ids.shape[1] - plen) + usage_std(counts) / tau
    pick = final.reshape(seqs, width).argmin(dim=1) + torch.arange(seqs, device=device) * width
    return ids[pick].cpu()


def ebss_windows(moe: MoEModel, tokenizer, spec: CalibrationSpec, seed: int, ctx: RunContext,
                 model_dir: Path | None = None) -> tuple[torch.Tensor, dict]:
    """[samples, seq_len] self-sampled calibration windows and diagnostics (wall time, cache hit)."""
    cache_file = None
    if spec.ebss.cache and model_dir is not None:
        key = cache_key(model_dir, samples=spec.samples, seq_len=spec.seq_len, width=spec.ebss.width,
                        tau=spec.ebss.tau, candidates=spec.ebss.candidates, seed=seed)
        cache_file = Path(ctx.cache_dir) / "ebss" / f"{key}.pt"
        if cache_file.is_file():
            windows = torch.load(cache_file)
            return windows, {"ebss": {"cached": True, "cache_file": str(cache_file), "sample_s": 0.0}}
    t0 = time.perf_counter()
    device = next(moe.model.parameters()).device
    first = start_tokens(tokenizer, spec.samples)
    group = max(1, ROWS_PER_BATCH // spec.ebss.width)
    gen = torch.Generator(device=device).manual_seed(seed)
    out = []
    for g0 in range(0, spec.samples, group):
        chunk = first[g0:g0 + group]
        done = g0 / spec.samples

        def prog(f: float, done=done, share=len(chunk) / spec.samples) -> None:
            ctx.progress("calibrate: EBSS sampling", done + share * f)
        out.append(_sample_group(moe, chunk, tokenizer.bos_token_id, spec.seq_len, spec.ebss.width,
                                 spec.ebss.tau, device, prog, spec.ebss.candidates == "sample", gen))
        ctx.check_cancel()
    windows = torch.cat(out)
    seconds = time.perf_counter() - t0
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        torch.save(windows, tmp)
        tmp.replace(cache_file)
    return windows, {"ebss": {"cached": False, "sample_s": round(seconds, 3), "width": spec.ebss.width,
                              "tau": spec.ebss.tau}}
