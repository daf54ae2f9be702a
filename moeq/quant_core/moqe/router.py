"""The MoQE router: frozen FP token embeddings → small Transformer encoder → mean pool → MLP → K logits."""

from __future__ import annotations

import torch
from torch import nn


class MoqeRouter(nn.Module):
    def __init__(self, embedding: torch.Tensor, num_variants: int, layers: int = 1, width: int = 64,
                 heads: int = 4, pad_id: int | None = None) -> None:
        super().__init__()
        self.embed = nn.Embedding.from_pretrained(embedding.detach().float().clone(), freeze=True)
        self.proj = nn.Linear(embedding.shape[1], width)
        block = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, num_variants))
        self.pad_id = pad_id

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Variant logits [B, K] for token ids [B, S] (padding positions are masked out of the pool)."""
        mask = ids != self.pad_id if self.pad_id is not None else torch.ones_like(ids, dtype=torch.bool)
        h = self.encoder(self.proj(self.embed(ids)), src_key_padding_mask=~mask)
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return self.head(pooled)

    @torch.no_grad()
    def choose(self, ids: torch.Tensor) -> torch.Tensor:
        """Deterministic variant choice per input (argmax in eval mode)."""
        was = self.training
        self.eval()
        out = self(ids).argmax(-1)
        self.train(was)
        return out


def balance_term(probs: torch.Tensor) -> torch.Tensor:
    """1 + coefficient of variation of the batch's mean variant usage (MoQE balancing loss)."""
    usage = probs.mean(0)
    return 1.0 + usage.std(unbiased=False) / usage.mean().clamp(min=1e-8)


def train_router(router: MoqeRouter, ids: torch.Tensor, labels: torch.Tensor, *, epochs: int, alpha: float,
                 lr: float = 3e-3, batch_size: int = 32, seed: int = 0) -> list[float]:
    """Cross-entropy on lowest-loss labels + α_t·(1 + CV(usage)), α decaying linearly to 0; returns losses."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW([p for p in router.parameters() if p.requires_grad], lr=lr)
    router.train()
    history = []
    for epoch in range(epochs):
        a = alpha * (1 - epoch / max(1, epochs))
        perm = torch.randperm(ids.shape[0], generator=gen)
        total = 0.0
        for b0 in range(0, len(perm), batch_size):
            sel = perm[b0:b0 + batch_size]
            logits = router(ids[sel])
            loss = nn.functional.cross_entropy(logits, labels[sel]) + a * balance_term(logits.softmax(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(sel)
        history.append(total / ids.shape[0])
    router.eval()
    return history
