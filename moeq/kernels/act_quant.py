"""Per-token dynamic activation fake quantization (WxAy, y < 16).

Each row (token) gets its own grid: asymmetric (DuQuant/EAQuant) — max/min of the row (0 included)
times the clip ratio, scale = (max − min)/(2^b − 1), zero = round(−min/scale), codes 0 … 2^b − 1;
symmetric (MoEQuant's QuaRot-based code) — scale = max|x|·c/(2^(b−1) − 1), codes clamped to
−2^(b−1) … 2^(b−1) − 1 (docs/methods.md, "Activation quantization grid"). Returns the dequantized
values in the input dtype; the kernel is bit-identical to `act_quant_ref` in float32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from moeq.kernels.backend import resolve_backend

EPS = 1e-8


def act_quant_ref(x: torch.Tensor, bits: int, clip_ratio: float = 0.9, symmetric: bool = False) -> torch.Tensor:
    xf = x.float()
    if symmetric:
        half = 2 ** (bits - 1) - 1
        scale = (xf.abs().amax(-1, keepdim=True) * clip_ratio / half).clamp(min=EPS)
        q = torch.clamp(torch.round(xf / scale), -half - 1, half)
        return (q * scale).to(x.dtype)
    maxq = 2 ** bits - 1
    xmax = xf.amax(-1, keepdim=True).clamp(min=0) * clip_ratio
    xmin = xf.amin(-1, keepdim=True).clamp(max=0) * clip_ratio
    scale = ((xmax - xmin) / maxq).clamp(min=EPS)
    zero = torch.round(-xmin / scale)
    q = torch.clamp(torch.round(xf / scale) + zero, 0, maxq)
    return ((q - zero) * scale).to(x.dtype)


@triton.jit
def _round(v):
    """Round half to even, as torch.round does."""
    f = tl.floor(v)
    diff = v - f
    up = (diff > 0.5) | ((diff == 0.5) & ((f - 2.0 * tl.floor(f * 0.5)) == 1.0))
    return tl.where(up, f + 1.0, f)


@triton.jit
def _act_quant_kernel(x_ptr, out_ptr, D, clip, BITS: tl.constexpr, SYMMETRIC: tl.constexpr, BLOCK_D: tl.constexpr):
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK_D)
    mask = offs < D
    x = tl.load(x_ptr + row * D + offs, mask=mask, other=0.0).to(tl.float32)
    if SYMMETRIC:
        half = (1 << (BITS - 1)) - 1
        amax = tl.max(tl.where(mask, tl.abs(x), 0.0), axis=0)
        scale = tl.maximum(amax * clip / half, 1e-8)
        q = tl.minimum(tl.maximum(_round(x / scale), -half - 1.0), half * 1.0)
        y = q * scale
    else:
        maxq = (1 << BITS) - 1
        xmax = tl.maximum(tl.max(tl.where(mask, x, float("-inf")), axis=0), 0.0) * clip
        xmin = tl.minimum(tl.min(tl.where(mask, x, float("inf")), axis=0), 0.0) * clip
        scale = tl.maximum((xmax - xmin) / maxq, 1e-8)
        zero = _round(-xmin / scale)
        q = tl.minimum(tl.maximum(_round(x / scale) + zero, 0.0), maxq * 1.0)
        y = (q - zero) * scale
    tl.store(out_ptr + row * D + offs, y.to(out_ptr.dtype.element_ty), mask=mask)


def act_quant(x: torch.Tensor, bits: int, clip_ratio: float = 0.9, symmetric: bool = False,
              backend: str = "auto") -> torch.Tensor:
    """Fake-quantize `x` per row of its last dimension to `bits` (4 or 8)."""
    if bits not in (2, 3, 4, 8):
        raise ValueError(f"activation bits must be one of (2, 3, 4, 8), got {bits}")
    if not 0.0 < clip_ratio <= 1.0:
        raise ValueError(f"clip ratio must be in (0, 1], got {clip_ratio}")
    if not x.is_floating_point():
        raise ValueError(f"activations must be floating point, got {x.dtype}")
    if x.numel() == 0 or resolve_backend(backend, x.device) == "torch":
        return act_quant_ref(x, bits, clip_ratio, symmetric)
    d = x.shape[-1]
    flat = x.reshape(-1, d).contiguous()
    out = torch.empty_like(flat)
    _act_quant_kernel[(flat.shape[0],)](flat, out, d, float(clip_ratio), BITS=bits, SYMMETRIC=symmetric,
                                        BLOCK_D=triton.next_power_of_2(d))
    return out.reshape(x.shape)
