"""Quantize weight matrices in place (RTN or GPTQ) and return their integer records.

Every function writes the dequantized grid values back into the model's own tensor (a Linear's
weight or a view into fused expert parameters) and returns the `WeightRecord` with codes/scales.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from moeq.quant_core.functional.affine import QuantParams, compute_params, dequantize, quantize
from moeq.quant_core.functional.clip import search_clip
from moeq.quant_core.functional.gptq import gptq_quantize
from moeq.quant_core.quantized import Role, WeightRecord
from moeq.contract.techniques import GptqConfig, RtnConfig

HESSIAN_CHUNK_BYTES = 2 * 2**30  # batch this many bytes of stacked Hessians per GPTQ solve
EXPERT_CHUNK_BYTES = 512 * 2**20  # float32 copies of expert weights made at once (RTN, GPTQ, dequant)


@dataclass(frozen=True)
class Scheme:
    """How one tensor is quantized: grid + method."""

    group_size: int | None
    symmetric: bool
    clip_ratio: float
    method: RtnConfig | GptqConfig


def rtn_params(w: torch.Tensor, bits, scheme: Scheme, clip_search: bool | None = None) -> QuantParams:
    """Grid parameters for RTN, with clip search when the method asks for it (or `clip_search`)."""
    method = scheme.method
    search = clip_search if clip_search is not None else isinstance(method, RtnConfig) and method.clip_search
    if search:
        cmin = method.clip_min if isinstance(method, RtnConfig) else 0.35
        steps = method.clip_steps if isinstance(method, RtnConfig) else 14
        params, _ = search_clip(w, bits, scheme.group_size, scheme.symmetric, cmin, steps)
        return params
    return compute_params(w, bits, scheme.group_size, scheme.symmetric, scheme.clip_ratio)


def quantize_matrix(w: torch.Tensor, bits: int, scheme: Scheme, H: torch.Tensor | None) -> tuple[torch.Tensor, QuantParams]:
    """Codes and params for one [out, in] matrix (GPTQ when H is given and the method is GPTQ)."""
    if isinstance(scheme.method, GptqConfig) and H is not None:
        m = scheme.method
        res = gptq_quantize(w, H, bits, scheme.group_size, scheme.symmetric, block_size=m.block_size,
                            damp=m.damp, act_order=m.act_order, clip=scheme.clip_ratio, mse=m.clip_search)
        return res.codes, res.params
    params = rtn_params(w.float(), bits, scheme)
    return quantize(w.float(), params), params


def quantize_linear(module: torch.nn.Module, key: str, layer: int, bits: int, scheme: Scheme,
                    H: torch.Tensor | None = None, role: Role = "linear") -> WeightRecord:
    w = module.weight.data
    codes, params = quantize_matrix(w.float(), bits, scheme, H)
    rec = WeightRecord(key=key, role=role, layer=layer, codes=codes, params=params)
    w.copy_(rec.dequant(w.dtype))
    return rec


def expert_chunks(n: int, rows: int, cols: int, limit: int | None = None) -> list[slice]:
    """Slices of whole experts whose float32 [rows, cols] matrices stay within `limit` bytes
    (default EXPERT_CHUNK_BYTES) together."""
    step = max(1, (EXPERT_CHUNK_BYTES if limit is None else limit) // (rows * cols * 4))
    return [slice(a, min(a + step, n)) for a in range(0, n, step)]


def quantize_stacked(view: torch.Tensor, key: str, layer: int, role: Role, bits: torch.Tensor, scheme: Scheme,
                     H: torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None,
                     use_gptq: torch.Tensor) -> WeightRecord:
    """Quantize [n, out, in] expert weights in place: batched GPTQ for experts with `use_gptq`
    (Hessians H [n, in, in], or a function giving the Hessians of a chunk of experts), RTN for the
    rest — with clip search when they are GPTQ fallbacks.
    Float32 work copies are made per chunk of experts (`expert_chunks`), never for the whole stack."""
    n, rows, cols = view.shape
    g = cols if scheme.group_size is None else scheme.group_size
    codes = torch.empty(n, rows, cols, dtype=torch.uint8, device=view.device)
    scale = torch.empty(n, rows, cols // g, device=view.device)
    zero = torch.empty_like(scale)
    gptq = isinstance(scheme.method, GptqConfig) and H is not None
    mask = use_gptq.to(torch.bool) if gptq else torch.zeros(n, dtype=torch.bool)
    rest = torch.nonzero(~mask).reshape(-1)
    step = expert_chunks(n, rows, cols)[0].stop
    for c0 in range(0, len(rest), step):
        sel = rest[c0:c0 + step]
        w = view[sel].float()
        params = rtn_params(w, bits[sel], scheme, clip_search=True if gptq else None)
        codes[sel], scale[sel], zero[sel] = quantize(w, params), params.scale, params.zero
        del w, params
    idx = torch.nonzero(mask).reshape(-1)
    if len(idx):
        m = scheme.method
        chunk = max(1, min(HESSIAN_CHUNK_BYTES // (cols * cols * 4), step))
        for c0 in range(0, len(idx), chunk):
            sel = idx[c0:c0 + chunk]
            H_sel = H(sel) if callable(H) else H[sel]
            res = gptq_quantize(view[sel].float(), H_sel.to(view.device), bits[sel], scheme.group_size,
                                scheme.symmetric, block_size=m.block_size, damp=m.damp, act_order=m.act_order,
                                clip=scheme.clip_ratio, mse=m.clip_search)
            codes[sel], scale[sel], zero[sel] = res.codes, res.params.scale, res.params.zero
            del res, H_sel  # GPTQ's float32 grid weights and this chunk's Hessians are done with
    params = QuantParams(scale, zero, bits, g, scheme.symmetric)
    for c in expert_chunks(n, rows, cols):
        view[c].copy_(dequantize(codes[c], QuantParams(scale[c], zero[c], bits[c], g, scheme.symmetric), view.dtype))
    return WeightRecord(key=key, role=role, layer=layer, codes=codes, params=params)
