"""Model-scoring primitives shared by the task scorers and the lm-evaluation-harness adapter."""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F

from moeq.quant_core.evaluate.forward import forward_many
from moeq.quant_core.hf_cache import cache_keyword, cache_of


def encode(tokenizer, text: str, bos: bool) -> list[int]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if bos and tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id, *ids]
    return ids


def encode_many(tokenizer, texts: list[str], bos: bool) -> list[list[int]]:
    """`encode` of every text (each distinct text tokenized once, all in one batched call)."""
    distinct = list(dict.fromkeys(texts))
    if not distinct:
        return []
    ids = dict(zip(distinct, tokenizer(distinct, add_special_tokens=False)["input_ids"]))
    head = [tokenizer.bos_token_id] if bos and tokenizer.bos_token_id is not None else []
    return [head + list(ids[t]) for t in texts]


@torch.no_grad()
def loglikelihoods(model, tokenizer, pairs: list[tuple[str, str]], device, batch_size: int = 32
                   ) -> list[tuple[float, bool]]:
    """(Σ log p(continuation | context), continuation is the greedy choice) for each pair."""
    contexts = encode_many(tokenizer, [ctx for ctx, _ in pairs], bos=True)
    continuations = encode_many(tokenizer, [cont for _, cont in pairs], bos=False)
    requests = [(c_ids + n_ids, len(n_ids)) for c_ids, n_ids in zip(contexts, continuations)]
    out: list[tuple[float, bool]] = [(0.0, True)] * len(requests)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(requests)), key=lambda r: -len(requests[r][0]))
    groups, batches = [], []
    for b0 in range(0, len(order), batch_size):
        batch = order[b0:b0 + batch_size]
        width = max(len(requests[r][0]) for r in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        for row, r in enumerate(batch):  # right padding: causal attention keeps real positions exact
            ids[row, :len(requests[r][0])] = torch.tensor(requests[r][0])
        groups.append(batch)
        batches.append(ids)

    def consume(j: int, logits: torch.Tensor) -> None:
        logp = F.log_softmax(logits.float(), dim=-1)
        for row, r in enumerate(groups[j]):
            toks, n_cont = requests[r]
            if n_cont == 0:
                continue
            pos = torch.arange(len(toks) - n_cont, len(toks), device=logp.device) - 1
            tgt = torch.tensor(toks[-n_cont:], device=logp.device)
            step = logp[row, pos]
            out[r] = (float(step.gather(1, tgt[:, None]).sum()), bool((step.argmax(-1) == tgt).all()))

    forward_many(model, batches, consume, device)
    return out


@torch.no_grad()
def greedy_generate(model, tokenizer, prompts: list[str], max_new_tokens: int, stops: list[str], device,
                    batch_size: int = 64) -> list[str]:
    """Greedy continuations (cut at the first stop string). Prompts are sorted by length and batched
    with left padding (attention mask and explicit positions keep each row exact), then decoded one
    token per step with the KV cache."""
    if getattr(model, "forward_many", None) is not None:  # layers streamed from disk
        return _greedy_streamed(model, tokenizer, prompts, max_new_tokens, stops, device, batch_size // 2)
    encoded = encode_many(tokenizer, prompts, bos=True)
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    out = [""] * len(prompts)
    for b0 in range(0, len(order), batch_size):
        chunk = order[b0:b0 + batch_size]
        new = _greedy_cached(model, tokenizer, [encoded[i] for i in chunk], max_new_tokens, stops, device)
        for i, text in zip(chunk, tokenizer.batch_decode(new, skip_special_tokens=True)):
            for s in stops:
                text = text.split(s)[0]
            out[i] = text
    return out


def _greedy_streamed(model, tokenizer, prompts: list[str], max_new_tokens: int, stops: list[str], device,
                     batch_size: int) -> list[str]:
    """Greedy continuations (cut at the first stop string); prompts of equal token length are batched.
    All batches advance one token per step together (one pass of a streamed model per step)."""
    encoded = encode_many(tokenizer, prompts, bos=True)
    buckets: dict[int, list[int]] = defaultdict(list)
    for i, ids in enumerate(encoded):
        buckets[len(ids)].append(i)
    chunks = [idxs[b0:b0 + batch_size] for idxs in buckets.values() for b0 in range(0, len(idxs), batch_size)]
    seqs = [torch.tensor([encoded[i] for i in chunk], dtype=torch.long, device=device) for chunk in chunks]
    starts = [s.shape[1] for s in seqs]
    active = list(range(len(chunks)))
    for _ in range(max_new_tokens):
        if not active:
            break
        nxt: dict[int, torch.Tensor] = {}
        forward_many(model, [seqs[c] for c in active],
                     lambda j, logits: nxt.__setitem__(active[j], logits[:, -1].argmax(-1, keepdim=True)), device)
        still = []
        for c in active:
            seqs[c] = torch.cat([seqs[c], nxt[c].to(seqs[c].device)], dim=1)
            texts = tokenizer.batch_decode(seqs[c][:, starts[c]:], skip_special_tokens=True)
            if not (stops and all(any(s in t for s in stops) for t in texts)):
                still.append(c)
        active = still
    out = [""] * len(prompts)
    for chunk, seq, start in zip(chunks, seqs, starts):
        for i, text in zip(chunk, tokenizer.batch_decode(seq[:, start:], skip_special_tokens=True)):
            for s in stops:
                text = text.split(s)[0]
            out[i] = text
    return out


def _greedy_cached(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, stops: list[str],
                   device) -> torch.Tensor:
    """[B, <=max_new] greedy tokens after each prompt, stopping once every row has hit a stop string."""
    width = max(len(p) for p in prompts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):  # left padding: every row's last prompt token is at the same column
        ids[row, width - len(p):] = torch.tensor(p)
        mask[row, width - len(p):] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
    cache, last, cache_kw = cache_of(out), positions[:, -1:], cache_keyword(model)
    steps: list[torch.Tensor] = []
    done_text = [""] * len(prompts)
    for step in range(max_new_tokens):
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        steps.append(nxt)
        if stops:
            pieces = tokenizer.batch_decode(nxt, skip_special_tokens=True)
            done_text = [t + p for t, p in zip(done_text, pieces)]
            if all(any(s in t for s in stops) for t in done_text):
                break
        if step + 1 < max_new_tokens:
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            last = last + 1
            out = model(input_ids=nxt, attention_mask=mask, position_ids=last, use_cache=True, **{cache_kw: cache})
            cache = cache_of(out)
    return torch.cat(steps, dim=1)
