"""Family-aware routing math on router logits (pure tensors; see docs/methods.md "Routing rules").

A `RoutingRule` says how a family turns logits z [T, n] into expert scores, which experts it selects
and with what gate weights:

- softmax routers: scores = softmax(z); selection = top-k of the scores; weights = selected scores,
  renormalized over the top-k when `norm_topk_prob`;
- sigmoid routers (DeepSeek-V3): scores = sigmoid(z); selection uses scores + a per-expert bias and,
  with n_group > 1, only the `topk_group` best groups; weights = the selected *unbiased* scores,
  renormalized when `norm_topk_prob`, times `scaling`;
- sparsemixer (PhiMoE, at inference): experts picked one at a time by the largest logit among those
  not yet picked; each pick's weight is its softmax over the logits left after masking those more
  than 2·eps (relative) below it (`sparsemixer_eps`, the config's router_jitter_noise).

`routing_distribution` is the distribution over all n experts that the alignment loss and the
routing KL compare: softmax(z), or the sigmoid scores normalized to sum to one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class RoutingRule:
    top_k: int
    score: Literal["softmax", "sigmoid"] = "softmax"
    norm_topk_prob: bool = False
    n_group: int = 1
    topk_group: int = 1
    group_score: Literal["max", "top2_sum"] = "max"
    scaling: float = 1.0
    sparsemixer_eps: float | None = None  # PhiMoE's sparsemixer weights (selection = top-k of the logits)


SOFTMAX_TOP1 = RoutingRule(top_k=1)


def expert_scores(z: torch.Tensor, rule: RoutingRule) -> torch.Tensor:
    z = z.float()
    return torch.sigmoid(z) if rule.score == "sigmoid" else F.softmax(z, dim=-1)


def routing_distribution(z: torch.Tensor, rule: RoutingRule | None = None) -> torch.Tensor:
    """log of the per-token distribution over all experts (softmax, or normalized sigmoid scores)."""
    if rule is None or rule.score == "softmax":
        return F.log_softmax(z.float(), dim=-1)
    s = torch.sigmoid(z.float())
    return torch.log(s) - torch.log(s.sum(-1, keepdim=True))


def select_experts(z: torch.Tensor, rule: RoutingRule, m: int | None = None,
                   bias: torch.Tensor | None = None) -> torch.Tensor:
    """Indices [T, m] of the experts the rule selects (m defaults to top_k), best first."""
    m = rule.top_k if m is None else m
    choice = expert_scores(z, rule)
    if bias is not None:
        choice = choice + bias.float()
    if rule.n_group > 1:
        t, n = choice.shape
        grouped = choice.reshape(t, rule.n_group, n // rule.n_group)
        if rule.group_score == "top2_sum":
            gscore = grouped.topk(min(2, grouped.shape[-1]), dim=-1).values.sum(-1)
        else:
            gscore = grouped.amax(-1)
        keep = torch.zeros_like(gscore, dtype=torch.bool)
        keep.scatter_(1, gscore.topk(rule.topk_group, dim=-1).indices, True)
        mask = keep[:, :, None].expand_as(grouped).reshape(t, n)
        choice = choice.masked_fill(~mask, float("-inf"))
    return choice.topk(m, dim=-1).indices


def _sparsemixer_weights(z: torch.Tensor, index: torch.Tensor, eps: float) -> torch.Tensor:
    z = z.float()
    left, out = z, []
    for j in range(index.shape[1]):
        top = left.amax(-1, keepdim=True)
        masked = ((top - z) / z.abs().clamp(min=top)) > 2 * eps
        out.append(F.softmax(left.masked_fill(masked, float("-inf")), dim=-1).gather(-1, index[:, j:j + 1]))
        left = left.scatter(-1, index[:, j:j + 1], float("-inf"))
    return torch.cat(out, dim=-1)


def gate_weights(z: torch.Tensor, index: torch.Tensor, rule: RoutingRule) -> torch.Tensor:
    """Weights [T, k] the block applies to the experts in `index`."""
    if rule.sparsemixer_eps is not None:
        return _sparsemixer_weights(z, index, rule.sparsemixer_eps) * rule.scaling
    w = expert_scores(z, rule).gather(-1, index)
    if rule.norm_topk_prob:
        w = w / w.sum(-1, keepdim=True).clamp(min=1e-20)
    return w * rule.scaling


def route(z: torch.Tensor, rule: RoutingRule, bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(index [T, k], weights [T, k]) as the family's router computes them."""
    index = select_experts(z, rule, None, bias)
    return index, gate_weights(z, index, rule)


def router_alignment_loss(z_fp, z_q, m: int, lam: float = 0.0, rule: RoutingRule | None = None,
                          bias: torch.Tensor | None = None) -> torch.Tensor:
    """EAQuant's router alignment loss, averaged over tokens:

        Σ_{j ∈ S_m(z_fp)} p_j (log p_j − log q_j)  +  λ · mean((z_fp − z_q)²)

    with p, q the rule's distributions over *all* experts (full softmax for softmax routers) and
    S_m the m experts the rule selects on the FP logits (bias and groups included)."""
    z_fp = torch.as_tensor(z_fp, dtype=torch.float32)
    z_q = torch.as_tensor(z_q, dtype=torch.float32)
    if z_fp.dim() == 1:
        z_fp, z_q = z_fp[None], z_q[None]
    rule = rule or RoutingRule(top_k=m)
    top = select_experts(z_fp, rule, m, bias)
    log_p = routing_distribution(z_fp, rule).gather(-1, top)
    log_q = routing_distribution(z_q, rule).gather(-1, top)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean()
    return kl + lam * (z_fp - z_q).pow(2).mean() if lam > 0 else kl
