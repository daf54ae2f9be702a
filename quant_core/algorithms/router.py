"""The router under a recipe: kept FP, quantized plainly (RTN, per channel), or quantized with
EAQuant logit alignment: per-row clip ratios chosen by coordinate descent to minimize
KL(softmax(z_fp) ‖ softmax(z_q)) over the FP top-m experts, m = k + ⌊β(n−k)⌋, plus λ·MSE; or
quantized by GPTQ on the router's calibration inputs (mode "gptq", the MoEQuant paper's router).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from quant_core.adapters.model import MoEBlock
from quant_core.functional.affine import compute_params, fake_quant, quantize
from quant_core.functional.gptq import gptq_quantize, hessian
from quant_core.modules import ActQuant
from quant_core.quantized import QuantState, WeightRecord
from quant_core.recipe import RouterSpec

MAX_ALIGN_TOKENS = 8192


def _router_key(block: MoEBlock) -> str:
    s = block.spec
    return f"{s.layers}.{block.layer_idx}.{s.mlp}.{s.router}.weight"


def align_objective(z_fp: torch.Tensor, z_q: torch.Tensor, top_m: torch.Tensor, lam: float) -> torch.Tensor:
    """KL over the FP top-m experts (renormalized) + λ·MSE of all logits, averaged over tokens."""
    p = F.log_softmax(z_fp.gather(1, top_m), dim=-1)
    q = F.log_softmax(z_q.gather(1, top_m), dim=-1)
    kl = (p.exp() * (p - q)).sum(-1).mean()
    return kl + lam * (z_fp - z_q).pow(2).mean() if lam > 0 else kl


def _topk_agreement(z_fp: torch.Tensor, z_q: torch.Tensor, k: int) -> float:
    a = z_fp.topk(k, dim=-1).indices
    b = z_q.topk(k, dim=-1).indices
    return float((a[:, :, None] == b[:, None, :]).any(-1).float().mean())


@torch.no_grad()
def align_clips(w: torch.Tensor, x_fp: torch.Tensor, x_q: torch.Tensor, spec: RouterSpec, k: int,
                sweeps: int = 2) -> tuple[torch.Tensor, dict]:
    """Per-row clip ratios for router weight `w` [n, d] minimizing the alignment objective."""
    n = w.shape[0]
    z_fp = x_fp.float() @ w.float().T
    m = min(n, k + int(spec.beta * (n - k)))
    top_m = z_fp.topk(m, dim=-1).indices
    grid = torch.linspace(spec.clip_min, 1.0, spec.clip_steps).tolist()
    clips = torch.ones(n, 1)
    wf = w.float()

    def row_q(e: int, c: float) -> torch.Tensor:
        return fake_quant(wf[e:e + 1], compute_params(wf[e:e + 1], spec.bits, None, True, c))[0]

    z_q = x_q.float() @ fake_quant(wf, compute_params(wf, spec.bits, None, True, 1.0)).T
    before = {"objective": float(align_objective(z_fp, z_q, top_m, spec.lam)),
              "topk_agreement": _topk_agreement(z_fp, z_q, k)}
    for _ in range(sweeps):
        for e in range(n):
            best_c, best_obj, best_col = float(clips[e]), None, None
            for c in grid:
                col = x_q.float() @ row_q(e, c)
                z_try = z_q.clone()
                z_try[:, e] = col
                obj = float(align_objective(z_fp, z_try, top_m, spec.lam))
                if best_obj is None or obj < best_obj - 1e-12:
                    best_c, best_obj, best_col = c, obj, col
            clips[e] = best_c
            z_q[:, e] = best_col
    after = {"objective": float(align_objective(z_fp, z_q, top_m, spec.lam)), "topk_agreement": _topk_agreement(z_fp, z_q, k)}
    return clips, {"top_m": m, "before": before, "after": after, "mean_clip": float(clips.mean())}


@torch.no_grad()
def prepare_router(block: MoEBlock, x: torch.Tensor | None, spec: RouterSpec, state: QuantState,
                   backend: str) -> ActQuant | None:
    """Apply the recipe's router mode to `block`'s weight in place; returns the router's input
    quantization for the caller to install (None when the router stays FP)."""
    if spec.mode == "fp":
        return None
    w = block.router.weight.data
    aq = ActQuant(spec.act_bits, 1.0, False, backend=backend)
    clips: torch.Tensor | float = 1.0
    if spec.mode == "align" and x is not None:
        sub = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:MAX_ALIGN_TOKENS]]
        clips, diag = align_clips(w, sub, aq(sub), spec, block.top_k)
        state.diagnostics.setdefault("router_align", {})[str(block.layer_idx)] = diag
    if spec.mode == "gptq" and x is not None:
        res = gptq_quantize(w.float(), hessian(x), spec.bits, None, True, act_order=True)
        codes, params = res.codes, res.params
        state.diagnostics.setdefault("router_gptq", {})[str(block.layer_idx)] = {
            "tokens": int(x.shape[0]), "loss": float(res.loss)}
    else:
        params = compute_params(w.float(), spec.bits, None, True, clips)
        codes = quantize(w.float(), params)
    rec = WeightRecord(key=_router_key(block), role="router", layer=block.layer_idx, codes=codes, params=params)
    w.copy_(rec.dequant(w.dtype))
    state.add(rec)
    return aq
