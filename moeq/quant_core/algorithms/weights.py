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
    (Hessians H [n, in, in], or a function giving fresh Hessians of a chunk of experts, which GPTQ
    then overwrites), RTN for the rest — with clip search when they are GPTQ fallbacks.
    Float32 work copies are made one expert at a time for RTN and per chunk of experts
    (`expert_chunks`) for GPTQ, never for the whole stack."""
    return quantize_stacked_measured(view, key, layer, role, bits, scheme, H, use_gptq, measure=False)[0]


def quantize_stacked_measured(view: torch.Tensor, key: str, layer: int, role: Role, bits: torch.Tensor,
                              scheme: Scheme, H: torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None,
                              use_gptq: torch.Tensor, measure: bool = True
                              ) -> tuple[WeightRecord, torch.Tensor | None, torch.Tensor | None]:
    """`quantize_stacked`, and (with `measure`) per expert Σ(q − w)² and Σw² in float32 over
    [out, in] — q the dequantized weights in the view's dtype, w the weights before — computed
    while q is written back, so no copy of the original weights is kept."""
    n, rows, cols = view.shape
    g = cols if scheme.group_size is None else scheme.group_size
    codes = torch.empty(n, rows, cols, dtype=torch.uint8, device=view.device)
    scale = torch.empty(n, rows, cols // g, device=view.device)
    zero = torch.empty_like(scale)
    gptq = isinstance(scheme.method, GptqConfig) and H is not None
    mask = use_gptq.to(torch.bool) if gptq else torch.zeros(n, dtype=torch.bool)
    for sel in torch.nonzero(~mask).reshape(-1).split(1):  # RTN is elementwise and per group: one expert at a time
        w = view[sel].float()
        params = rtn_params(w, bits[sel], scheme, clip_search=True if gptq else None)
        codes[sel], scale[sel], zero[sel] = quantize(w, params), params.scale, params.zero
        del w, params
    idx = torch.nonzero(mask).reshape(-1)
    if len(idx):
        m = scheme.method
        chunk = max(1, min(HESSIAN_CHUNK_BYTES // (cols * cols * 4), expert_chunks(n, rows, cols)[0].stop))
        for c0 in range(0, len(idx), chunk):
            sel = idx[c0:c0 + chunk]
            res = gptq_quantize(view[sel].float(), (H(sel) if callable(H) else H[sel]).to(view.device), bits[sel],
                                scheme.group_size, scheme.symmetric, block_size=m.block_size, damp=m.damp,
                                act_order=m.act_order, clip=scheme.clip_ratio, mse=m.clip_search, scratch=True)
            codes[sel], scale[sel], zero[sel] = res.codes, res.params.scale, res.params.zero
            del res  # GPTQ's float32 grid weights are done with
    params = QuantParams(scale, zero, bits, g, scheme.symmetric)
    errors = [_write_back(view, codes, params, c, measure) for c in expert_chunks(n, rows, cols)]
    rec = WeightRecord(key=key, role=role, layer=layer, codes=codes, params=params)
    if not measure:
        return rec, None, None
    return rec, torch.cat([e for e, _ in errors]), torch.cat([s for _, s in errors])


def _write_back(view: torch.Tensor, codes: torch.Tensor, p: QuantParams, c: slice,
                measure: bool) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Dequantize experts `c` into the view, one expert at a time; with `measure`, their Σ(q − w)²
    and Σw² over [out, in] as sums over one float32 buffer of the chunk in the view's layout: first
    w², then, expert by expert, w again, less q once q is written, squared ((w − q)² = (q − w)²
    exactly) — the same tensors summed as from a copy of the original weights."""
    buf = norm = None
    if measure:
        buf = view[c].to(torch.float32, copy=True)
        norm = buf.pow_(2).sum((1, 2))
    for e in range(c.start, c.stop):
        if measure:
            buf[e - c.start].copy_(view[e])
        q = dequantize(codes[e], QuantParams(p.scale[e], p.zero[e], p.bits[e], p.group_size, p.symmetric))
        view[e].copy_(q)  # rounds to the view's dtype as .to(view.dtype) does
        del q
        if measure:
            buf[e - c.start].sub_(view[e]).pow_(2)
    return None if not measure else (buf.sum((1, 2)), norm)
