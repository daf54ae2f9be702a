"""Affine weight quantizer on an integer grid (docs/methods.md "RTN").

Storage convention shared with `moeq/kernels/`: codes q are unsigned in [0, 2^b-1], dequant is
w = (q - z)·s, scales and zeros have shape [..., out, n_groups]. Symmetric uses all 2^b codes, as
GPTQ's reference code and compressed-tensors do: z = 2^(b-1), s = 2·max|w|·c / (2^b-1), so the signed
codes q - z run over -2^(b-1) … 2^(b-1)-1 (at 2 bits: {-2, -1, 0, 1}·s, four levels, not three);
asymmetric uses s = (max-min)·c / (2^b-1), z = round(-min/s).
All functions accept leading batch dims (e.g. [experts, out, in]) and a per-batch bit width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

Bits = int | torch.Tensor  # int, or a tensor broadcastable to the leading dims (per expert)


@dataclass(frozen=True)
class QuantParams:
    scale: torch.Tensor  # [..., out, G]
    zero: torch.Tensor  # [..., out, G] (float, integer-valued)
    bits: torch.Tensor  # [...] or [] (int64)
    group_size: int  # columns per group (in_features for per-channel)
    symmetric: bool

    @property
    def maxq(self) -> torch.Tensor:
        return (2 ** self.bits) - 1


def _bits_tensor(bits: Bits, lead_shape: torch.Size, device) -> torch.Tensor:
    b = torch.as_tensor(bits, dtype=torch.int64, device=device)
    if b.dim() == 0:
        return b
    if b.shape != lead_shape:
        raise ValueError(f"bits shape {tuple(b.shape)} does not match leading dims {tuple(lead_shape)}")
    return b


def _expand(b: torch.Tensor, nd: int) -> torch.Tensor:
    """Broadcast a leading-dims tensor over `nd` trailing dims."""
    return b.reshape(*b.shape, *([1] * nd)) if b.dim() else b


def resolve_group_size(in_features: int, group_size: int | None) -> int:
    g = in_features if group_size is None else int(group_size)
    if g <= 0 or in_features % g != 0:
        raise ValueError(f"group size {group_size} does not divide the input dimension {in_features}")
    return g


def _grouped(w: torch.Tensor, g: int) -> torch.Tensor:
    return w.reshape(*w.shape[:-1], w.shape[-1] // g, g)


def compute_params(w: torch.Tensor, bits: Bits, group_size: int | None, symmetric: bool,
                   clip: float | torch.Tensor = 1.0) -> QuantParams:
    """Scales/zeros for `w` [..., out, in]; `clip` is a ratio or a tensor [..., out, G]."""
    g = resolve_group_size(w.shape[-1], group_size)
    wg = _grouped(w.float(), g)  # [..., out, G, g]
    b = _bits_tensor(bits, w.shape[:-2], w.device)
    clip_t = torch.as_tensor(clip, dtype=torch.float32, device=w.device)
    if symmetric:
        amax = wg.abs().amax(dim=-1) * clip_t
        scale = 2.0 * amax / _expand(2 ** b - 1, 2).float()
        zero = torch.zeros_like(scale) + _expand(2 ** (b - 1), 2).float()
    else:
        wmax = wg.amax(dim=-1).clamp(min=0) * clip_t
        wmin = wg.amin(dim=-1).clamp(max=0) * clip_t
        maxq = _expand(2 ** b - 1, 2).float()
        scale = (wmax - wmin) / maxq
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        zero = torch.clamp(torch.round(-wmin / scale), torch.zeros_like(maxq), maxq)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return QuantParams(scale=scale, zero=zero, bits=b, group_size=g, symmetric=symmetric)


def quantize(w: torch.Tensor, p: QuantParams) -> torch.Tensor:
    """Integer codes (uint8) of `w` on the grid `p`."""
    maxq = _expand(p.maxq, 3).float()
    q = _grouped(w.float(), p.group_size) / p.scale[..., None]  # one float32 temporary, updated in place
    q.round_().add_(p.zero[..., None]).clamp_(torch.zeros_like(maxq), maxq)
    return q.reshape(w.shape).to(torch.uint8)


def dequantize(codes: torch.Tensor, p: QuantParams, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """w = (q - z)·s, the exact grid values."""
    qg = _grouped(codes.to(torch.float32, copy=True), p.group_size)  # one float32 temporary, updated in place
    return qg.sub_(p.zero[..., None]).mul_(p.scale[..., None]).reshape(codes.shape).to(dtype)


def fake_quant(w: torch.Tensor, p: QuantParams) -> torch.Tensor:
    """Quantize then dequantize, in float32."""
    return dequantize(quantize(w, p), p)


def quant_error(w: torch.Tensor, p: QuantParams) -> torch.Tensor:
    """Squared reconstruction error per [..., out, G] group."""
    err = (_grouped(w.float(), p.group_size) - _grouped(fake_quant(w, p), p.group_size)) ** 2
    return err.sum(dim=-1)


def snr_db(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """Signal-to-noise ratio 10·log10(‖ref‖² / ‖ref − approx‖²) in dB."""
    noise = (reference.float() - approx.float()).pow(2).sum()
    signal = reference.float().pow(2).sum()
    return float(10 * torch.log10(signal / noise.clamp(min=1e-30)))
