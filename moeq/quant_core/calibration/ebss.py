"""MoEQuant Expert-Balanced Self-Sampling (EBSS, Algorithm 1 of arXiv 2505.03804): calibration text
sampled from the model itself.

Batched beam search (width w) per sequence, from a random (seeded) first vocabulary token after BOS.
Each step every beam proposes its w most likely next tokens (or w sampled ones); all w² candidates are
run through the model (one token each, on a copy of the parent beam's KV cache), so a candidate's
score uses its *own* expert usage, the new token's routing included:

    score = −(Σ log p of the generated tokens) / (len) + σ / τ,
    σ = mean over MoE layers of √( E/(E−1) · Σ_e (u_e − μ)² ),
    u_e = how many of the candidate's routed tokens went to expert e (`usage: "count"`, the default) or
          their share (`usage: "fraction"`: one token then moves σ by O(1/len), no more than the NLL
          term, and at τ = 1.2 the sets balance no better than corpus text; docs/methods.md "MoEQuant"),

len = the candidate's length without BOS. The w lowest scores survive; the kept candidates' logits
and cache carry over, so each step costs one forward of w² single tokens per sequence.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from moeq.quant_core.adapters.dispatch import DispatchRecorder
from moeq.quant_core.adapters.model import MoEModel
from moeq.quant_core.context import RunContext
from moeq.quant_core.fingerprint import cache_key
from moeq.quant_core.hf_cache import cache_keyword
from moeq.contract.recipe import CalibrationSpec

log = logging.getLogger(__name__)
ROWS_PER_BATCH = 64  # beams per forward; the candidate forward runs ROWS_PER_BATCH · w rows
ALGORITHM_VERSION = 3  # part of the cache key: sets sampled by an older sampler are not reused


def start_tokens(tokenizer, n: int, seed: int = 0) -> list[int]:
    """n random first tokens (seeded), drawn without replacement from the non-special vocabulary
    while it lasts."""
    special = set(tokenizer.all_special_ids or [])
    vocab = torch.tensor([i for i in range(len(tokenizer)) if i not in special])
    gen = torch.Generator().manual_seed(seed)
    picks = torch.cat([torch.randperm(len(vocab), generator=gen) for _ in range(-(-n // len(vocab)))])[:n]
    return vocab[picks].tolist()


def usage_sigma(counts: torch.Tensor, usage: str = "fraction") -> torch.Tensor:
    """counts [..., layers, E] → [...]: Algorithm 1's σ = √(E/(E−1)·Σ_e(u_e − μ)²) of the usage u —
    the fractions of the routed tokens (default) or the counts themselves — averaged over layers."""
    e = counts.shape[-1]
    usage = counts / counts.sum(-1, keepdim=True).clamp(min=1) if usage == "fraction" else counts
    dev = (usage - usage.mean(dim=-1, keepdim=True)).pow(2).sum(dim=-1)
    return torch.sqrt(dev * e / max(1, e - 1)).mean(dim=-1)


def _route_counts(rec: DispatchRecorder, layers: list[int], rows: int, n_exp: int, device,
                  skip: int = 0) -> torch.Tensor:
    """[rows, layers, n_exp] expert hits of the tokens just forwarded, positions before `skip` left out."""
    out = torch.zeros(rows, len(layers), n_exp, device=device)
    for li, layer in enumerate(layers):
        d = rec.take(layer).index.to(device)
        idx = d.reshape(rows, -1, d.shape[-1])[:, skip:].reshape(rows, -1)
        out[:, li].scatter_add_(1, idx, torch.ones_like(idx, dtype=out.dtype))
    return out


@torch.no_grad()
def _sample_group(moe: MoEModel, first: list[int], bos: int | None, length: int, width: int, tau: float,
                  device: torch.device, progress, sample: bool = False, gen: torch.Generator | None = None,
                  usage: str = "count") -> torch.Tensor:
    from transformers import DynamicCache

    model = moe.model
    layers = sorted(moe.blocks)
    n_exp = max(b.num_experts for b in moe.blocks.values())
    seqs, w = len(first), width
    rows = seqs * w
    prefix = [[bos, t] if bos is not None else [t] for t in first]
    base = len(prefix[0]) - 1  # positions before the first (random) token: BOS, not scored
    ids = torch.tensor([p for p in prefix for _ in range(w)], device=device)  # [rows, P]
    cache = DynamicCache(config=model.config)
    cache_kw = cache_keyword(model)
    alive = torch.zeros(seqs, w, dtype=torch.bool, device=device)
    alive[:, 0] = True  # all beams start identical: keep one until the first expansion
    seq_base = torch.arange(seqs, device=device)[:, None]
    with DispatchRecorder(moe, device=None) as rec:
        rec.clear()
        logits = model(input_ids=ids, use_cache=True, **{cache_kw: cache}).logits[:, -1].float()
        counts = _route_counts(rec, layers, rows, n_exp, device, skip=base)  # BOS is not the candidate's
        nll = torch.zeros(rows, device=device)
        score = torch.zeros(rows, device=device)
        while ids.shape[1] < length:
            logp = F.log_softmax(logits, dim=-1)
            if sample:  # candidates drawn from p (without replacement) instead of the w most likely
                tok = torch.multinomial(logp.exp(), w, replacement=False, generator=gen)
                lp = logp.gather(1, tok)
            else:
                lp, tok = logp.topk(w, dim=-1)  # [rows, w]
            parent = torch.arange(rows, device=device).repeat_interleave(w)  # candidate → beam row
            cache.reorder_cache(parent)
            rec.clear()
            cand_logits = model(input_ids=tok.reshape(-1, 1), use_cache=True, **{cache_kw: cache}).logits[:, -1]
            cand_counts = counts[parent] + _route_counts(rec, layers, rows * w, n_exp, device)
            cand_nll = nll[parent] - lp.reshape(-1)
            length_now = ids.shape[1] + 1 - base  # the candidate's tokens after BOS
            cand_score = cand_nll / length_now + usage_sigma(cand_counts, usage) / tau  # [rows·w]
            grid = cand_score.reshape(seqs, w * w).masked_fill(~alive.repeat_interleave(w, dim=1), float("inf"))
            best = grid.topk(w, dim=-1, largest=False).indices  # [seqs, w] within each sequence's w² candidates
            keep = (best + seq_base * w * w).reshape(-1)  # [rows] global candidate index
            cache.reorder_cache(keep)
            ids = torch.cat([ids[parent[keep]], tok.reshape(-1)[keep][:, None]], dim=1)
            nll, counts, score = cand_nll[keep], cand_counts[keep], cand_score[keep]
            logits = cand_logits[keep].float()
            alive = torch.isfinite(grid.gather(1, best))
            progress(ids.shape[1] / length)
    pick = score.masked_fill(~alive.reshape(-1), float("inf")).reshape(seqs, w).argmin(dim=1)
    return ids[pick + seq_base[:, 0] * w].cpu()


def ebss_windows(moe: MoEModel, tokenizer, spec: CalibrationSpec, seed: int, ctx: RunContext,
                 model_dir: Path | None = None) -> tuple[torch.Tensor, dict]:
    """[samples, seq_len] self-sampled calibration windows and diagnostics (wall time, cache hit)."""
    cache_file = None
    if spec.ebss.cache and model_dir is not None:
        key = cache_key(model_dir, samples=spec.samples, seq_len=spec.seq_len, width=spec.ebss.width,
                        tau=spec.ebss.tau, candidates=spec.ebss.candidates, usage=spec.ebss.usage, seed=seed,
                        algorithm=ALGORITHM_VERSION)
        cache_file = Path(ctx.cache_dir) / "ebss" / f"{key}.pt"
        if cache_file.is_file():
            windows = torch.load(cache_file)
            return windows, {"ebss": {"cached": True, "cache_file": str(cache_file), "sample_s": 0.0}}
    t0 = time.perf_counter()
    device = next(moe.model.parameters()).device
    first = start_tokens(tokenizer, spec.samples, seed)
    group = max(1, ROWS_PER_BATCH // spec.ebss.width)
    gen = torch.Generator(device=device).manual_seed(seed)
    out = []
    for g0 in range(0, spec.samples, group):
        chunk = first[g0:g0 + group]
        done = g0 / spec.samples

        def prog(f: float, done=done, share=len(chunk) / spec.samples) -> None:
            ctx.progress("calibrate: EBSS sampling", done + share * f)
        out.append(_sample_group(moe, chunk, tokenizer.bos_token_id, spec.seq_len, spec.ebss.width,
                                 spec.ebss.tau, device, prog, spec.ebss.candidates == "sample", gen,
                                 spec.ebss.usage))
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
