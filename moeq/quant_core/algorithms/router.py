"""The router under a recipe: kept FP, quantized plainly (RTN, per channel), or quantized with
EAQuant logit alignment: per-row clip ratios chosen by coordinate descent to minimize the paper's
loss (full-distribution KL gathered at the FP top-m experts, m = k + ⌊β(n−k)⌋, plus λ·MSE) under
the family's routing rule; or quantized by GPTQ on the router's calibration inputs (mode "gptq", the
MoEQuant paper's router). Equations and deviations: docs/methods.md "EAQuant" and "MoEQuant".
"""

from __future__ import annotations

import torch

from moeq.quant_core.adapters.model import MoEBlock
from moeq.quant_core.functional.affine import compute_params, fake_quant, quantize
from moeq.quant_core.functional.gptq import gptq_quantize, hessian
from moeq.quant_core.functional.routing import (RoutingRule, router_alignment_loss, routing_distribution,
                                          select_experts)
from moeq.quant_core.modules import ActQuant
from moeq.quant_core.quantized import QuantState, WeightRecord
from moeq.contract.recipe import RouterSpec
from moeq.contract.techniques import GptqConfig

MAX_ALIGN_TOKENS = 8192


def _router_key(block: MoEBlock) -> str:
    s = block.spec
    return f"{s.layers}.{block.layer_idx}.{s.mlp}.{s.router}.weight"


def _topk_agreement(z_fp: torch.Tensor, z_q: torch.Tensor, rule: RoutingRule, bias: torch.Tensor | None) -> float:
    a = select_experts(z_fp, rule, None, bias)
    b = select_experts(z_q, rule, None, bias)
    return float((a[:, :, None] == b[:, None, :]).any(-1).float().mean())


@torch.no_grad()
def align_clips(w: torch.Tensor, x_fp: torch.Tensor, x_q: torch.Tensor, spec: RouterSpec, rule: RoutingRule,
                bias: torch.Tensor | None = None, sweeps: int = 2) -> tuple[torch.Tensor, dict]:
    """Per-row clip ratios for router weight `w` [n, d] minimizing the alignment loss under `rule`."""
    n = w.shape[0]
    k = rule.top_k
    z_fp = x_fp.float() @ w.float().T
    m = min(n, k + int(spec.beta * (n - k)))
    grid = torch.linspace(spec.clip_min, 1.0, spec.clip_steps).tolist() if spec.clip_steps > 1 else [1.0]

    def objective(z_q: torch.Tensor) -> float:
        return float(router_alignment_loss(z_fp, z_q, m, spec.lam, rule, bias))

    # The FP side of the loss is fixed (S_m, p), and a candidate changes one logit column e, so the
    # loss of every grid ratio is a closed form over [T, G] (docs/methods.md "EAQuant"):
    #   log q_j = f(z_j) − log Σ_i g(z_i),  f = id, g = exp (softmax) or f = log σ, g = σ (sigmoid).
    top = select_experts(z_fp, rule, m, bias)
    log_p = routing_distribution(z_fp, rule).gather(-1, top)
    p = log_p.exp()
    p_log_p = float((p * log_p).sum(-1).mean())
    p_full = torch.zeros_like(z_fp).scatter_(-1, top, p)  # p_j on S_m, 0 elsewhere
    sigmoid = rule.score == "sigmoid"
    f = torch.nn.functional.logsigmoid if sigmoid else (lambda z: z)
    tokens, n_cols = z_fp.shape

    def grid_objectives(z_q: torch.Tensor, e: int, cols: torch.Tensor) -> torch.Tensor:
        """alignment loss [G] of z_q with column e replaced by each column of cols [T, G]."""
        rest = torch.ones(n_cols, dtype=torch.bool)
        rest[e] = False
        if sigmoid:
            lse = torch.log(torch.sigmoid(z_q[:, rest]).sum(-1, keepdim=True) + torch.sigmoid(cols))
        else:
            shift = torch.maximum(z_q[:, rest].amax(-1, keepdim=True), cols.amax(-1, keepdim=True))
            lse = shift + torch.log(torch.exp(z_q[:, rest] - shift).sum(-1, keepdim=True) + torch.exp(cols - shift))
        fixed = (p_full[:, rest] * f(z_q[:, rest])).sum(-1, keepdim=True)
        cross = fixed + p_full[:, e:e + 1] * f(cols) - p_full.sum(-1, keepdim=True) * lse
        obj = p_log_p - cross.mean(0)
        if spec.lam > 0:
            sq = (z_fp[:, rest] - z_q[:, rest]).pow(2).sum() + (z_fp[:, e:e + 1] - cols).pow(2).sum(0)
            obj = obj + spec.lam * sq / (tokens * n_cols)
        return obj

    clips = torch.ones(n, 1)
    wf = w.float()
    grid_t = torch.tensor(grid, dtype=torch.float32)[:, None]

    z_q = x_q.float() @ fake_quant(wf, compute_params(wf, spec.bits, None, spec.symmetric, 1.0)).T
    before = {"objective": objective(z_q), "topk_agreement": _topk_agreement(z_fp, z_q, rule, bias)}
    for _ in range(sweeps):
        for e in range(n):
            rows = wf[e:e + 1].expand(len(grid), -1)
            cols = x_q.float() @ fake_quant(rows, compute_params(rows, spec.bits, None, spec.symmetric, grid_t)).T  # [T, G]
            best = int(grid_objectives(z_q, e, cols).argmin())  # the first minimum, as a scan picks
            clips[e] = grid[best]
            z_q[:, e] = cols[:, best]
    after = {"objective": objective(z_q), "topk_agreement": _topk_agreement(z_fp, z_q, rule, bias)}
    return clips, {"top_m": m, "routing": rule.score, "before": before, "after": after, "mean_clip": float(clips.mean())}


@torch.no_grad()
def single_clip(w: torch.Tensor, x_q: torch.Tensor, spec: RouterSpec, rule: RoutingRule,
                bias: torch.Tensor | None = None) -> tuple[float, dict]:
    """EAQuant's released router search (`per_channel_kl_top0`): one clip ratio for the whole router
    weight `w` [n, d], the first of the grid clip_min … 1 (clip_steps ratios) with the least alignment
    loss (λ = 0, m = k + ⌊β(n−k)⌋) between the logits of the quantized input `x_q` under the FP and the
    quantized weight."""
    n, k = w.shape[0], rule.top_k
    m = min(n, k + int(spec.beta * (n - k)))
    wf, xf = w.float(), x_q.float()
    z_ref = xf @ wf.T
    grid = torch.linspace(spec.clip_min, 1.0, spec.clip_steps).tolist() if spec.clip_steps > 1 else [1.0]
    best, best_ratio, losses = float("inf"), 1.0, []
    for ratio in grid:
        z_q = xf @ fake_quant(wf, compute_params(wf, spec.bits, None, spec.symmetric, ratio)).T
        loss = float(router_alignment_loss(z_ref, z_q, m, 0.0, rule, bias))
        losses.append(loss)
        if loss < best:
            best, best_ratio = loss, ratio
    z_1 = xf @ fake_quant(wf, compute_params(wf, spec.bits, None, spec.symmetric, 1.0)).T
    z_b = xf @ fake_quant(wf, compute_params(wf, spec.bits, None, spec.symmetric, best_ratio)).T
    return best_ratio, {"search": "single", "top_m": m, "tokens": int(x_q.shape[0]), "clip": best_ratio,
                        "before": {"objective": losses[-1], "topk_agreement": _topk_agreement(z_ref, z_1, rule, bias)},
                        "after": {"objective": best, "topk_agreement": _topk_agreement(z_ref, z_b, rule, bias)}}


@torch.no_grad()
def prepare_router(block: MoEBlock, x: torch.Tensor | None, spec: RouterSpec, state: QuantState,
                   backend: str, gptq: GptqConfig | None = None,
                   mean_sequence: torch.Tensor | None = None) -> ActQuant | None:
    """Apply the recipe's router mode to `block`'s weight in place; returns the router's input
    quantization for the caller to install (None when the router stays FP). Mode "gptq" takes
    act-order, dampening and clip search from the recipe's GPTQ technique (`gptq`) when it has one
    (MoEQuant quantizes the router as one more linear), else act-order without clip search. Mode "align"
    with `search: "single"` searches on `mean_sequence` (the router input of the mean calibration sequence,
    as the authors' stage 1), falling back to the first calibration tokens when it is not given."""
    if spec.mode == "fp":
        return None
    w = block.router.weight.data
    aq = ActQuant(spec.act_bits, 1.0, False, backend=backend)
    clips: torch.Tensor | float = 1.0
    if spec.mode == "align" and x is not None and spec.search == "single":
        data = mean_sequence if mean_sequence is not None else x
        clips, diag = single_clip(w, aq(data), spec, block.routing_rule(), block.routing_bias())
        state.diagnostics.setdefault("router_align", {})[str(block.layer_idx)] = diag
    elif spec.mode == "align" and x is not None:
        sub = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:MAX_ALIGN_TOKENS]]
        clips, diag = align_clips(w, sub, aq(sub), spec, block.routing_rule(), block.routing_bias())
        state.diagnostics.setdefault("router_align", {})[str(block.layer_idx)] = diag
    if spec.mode == "gptq" and x is not None:
        cfg = gptq if gptq is not None else GptqConfig()
        res = gptq_quantize(w.float(), hessian(x), spec.bits, None, spec.symmetric, block_size=cfg.block_size, damp=cfg.damp,
                            act_order=cfg.act_order, mse=cfg.clip_search)
        codes, params = res.codes, res.params
        state.diagnostics.setdefault("router_gptq", {})[str(block.layer_idx)] = {
            "tokens": int(x.shape[0]), "loss": float(res.loss)}
    else:
        params = compute_params(w.float(), spec.bits, None, spec.symmetric, clips)
        codes = quantize(w.float(), params)
    rec = WeightRecord(key=_router_key(block), role="router", layer=block.layer_idx, codes=codes, params=params)
    w.copy_(rec.dequant(w.dtype))
    state.add(rec)
    return aq
