"""Model-scoring primitives shared by the task scorers and the lm-evaluation-harness adapter."""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F


def encode(tokenizer, text: str, bos: bool) -> list[int]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if bos and tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id, *ids]
    return ids


@torch.no_grad()
def loglikelihoods(model, tokenizer, pairs: list[tuple[str, str]], device, batch_size: int = 32
                   ) -> list[tuple[float, bool]]:
    """(Σ log p(continuation | context), continuation is the greedy choice) for each pair."""
    requests = []
    for ctx, cont in pairs:
        c_ids = encode(tokenizer, ctx, bos=True)
        n_ids = encode(tokenizer, cont, bos=False)
        requests.append((c_ids + n_ids, len(n_ids)))
    out: list[tuple[float, bool]] = [(0.0, True)] * len(requests)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(requests)), key=lambda r: -len(requests[r][0]))
    for b0 in range(0, len(order), batch_size):
        batch = order[b0:b0 + batch_size]
        width = max(len(requests[r][0]) for r in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        for row, r in enumerate(batch):  # right padding: causal attention keeps real positions exact
            ids[row, :len(requests[r][0])] = torch.tensor(requests[r][0])
        logp = F.log_softmax(model(input_ids=ids.to(device), use_cache=False).logits.float(), dim=-1)
        for row, r in enumerate(batch):
            toks, n_cont = requests[r]
            if n_cont == 0:
                continue
            pos = torch.arange(len(toks) - n_cont, len(toks), device=logp.device) - 1
            tgt = torch.tensor(toks[-n_cont:], device=logp.device)
            step = logp[row, pos]
            out[r] = (float(step.gather(1, tgt[:, None]).sum()), bool((step.argmax(-1) == tgt).all()))
    return out


@torch.no_grad()
def greedy_generate(model, tokenizer, prompts: list[str], max_new_tokens: int, stops: list[str], device,
                    batch_size: int = 32) -> list[str]:
    """Greedy continuations (cut at the first stop string); prompts of equal token length are batched
    and decoded with the KV cache (one new token per step after the prompt pass)."""
    encoded = [encode(tokenizer, p, bos=True) for p in prompts]
    buckets: dict[int, list[int]] = defaultdict(list)
    for i, ids in enumerate(encoded):
        buckets[len(ids)].append(i)
    out = [""] * len(prompts)
    for idxs in buckets.values():
        for b0 in range(0, len(idxs), batch_size):
            chunk = idxs[b0:b0 + batch_size]
            ids = torch.tensor([encoded[i] for i in chunk], dtype=torch.long, device=device)
            new = _greedy_cached(model, tokenizer, ids, max_new_tokens, stops)
            for i, text in zip(chunk, tokenizer.batch_decode(new, skip_special_tokens=True)):
                for s in stops:
                    text = text.split(s)[0]
                out[i] = text
    return out


def _greedy_cached(model, tokenizer, ids: torch.Tensor, max_new_tokens: int, stops: list[str]) -> torch.Tensor:
    """[B, <=max_new] greedy tokens after `ids` [B, S] (no padding), stopping once every row hit a stop."""
    steps: list[torch.Tensor] = []
    out = model(input_ids=ids, use_cache=True)
    past = out.past_key_values
    done_text = [""] * ids.shape[0]
    for step in range(max_new_tokens):
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        steps.append(nxt)
        if stops:
            pieces = tokenizer.batch_decode(nxt, skip_special_tokens=True)
            done_text = [t + p for t, p in zip(done_text, pieces)]
            if all(any(s in t for s in stops) for t in done_text):
                break
        if step + 1 < max_new_tokens:
            out = model(input_ids=nxt, past_key_values=past, use_cache=True)
            past = out.past_key_values
    return torch.cat(steps, dim=1) if steps else ids[:, :0]
