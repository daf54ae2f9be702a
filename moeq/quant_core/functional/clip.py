"""Clip-ratio search: per output channel (group) the clip c minimizing the weight error — squared error over
[c_min, 1] (`search_clip`), or the GPTQ reference quantizer's |·|^2.4 over shrinks 1 … 0.21 (`mse_clip`)."""

from __future__ import annotations

import torch

from moeq.quant_core.functional.affine import Bits, QuantParams, _expand, compute_params, quant_error


def _keep_better(best_err: torch.Tensor | None, best_clip: torch.Tensor | None, err: torch.Tensor,
                 clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per entry, the smaller error so far and its clip (an earlier clip wins ties)."""
    if best_err is None:
        return err, torch.full_like(err, clip)
    better = err < best_err
    return torch.where(better, err, best_err), torch.where(better, torch.full_like(err, clip), best_clip)


def search_clip(w: torch.Tensor, bits: Bits, group_size: int | None, symmetric: bool,
                clip_min: float = 0.35, steps: int = 14) -> tuple[QuantParams, torch.Tensor]:
    """Return (params at the best clip, best clip ratios [..., out, G]) by grid search."""
    best_err = None
    best_clip = None
    for c in torch.linspace(clip_min, 1.0, steps).tolist() if steps > 1 else [1.0]:
        err = quant_error(w, compute_params(w, bits, group_size, symmetric, c))
        best_err, best_clip = _keep_better(best_err, best_clip, err, c)
    return compute_params(w, bits, group_size, symmetric, best_clip), best_clip


MSE_NORM, MSE_GRID, MSE_MAXSHRINK = 2.4, 100, 0.8  # the GPTQ/QuaRot weight quantizer's `mse` search


def mse_clip(w: torch.Tensor, bits: Bits, group_size: int | None, symmetric: bool, norm: float = MSE_NORM,
             grid: int = MSE_GRID, maxshrink: float = MSE_MAXSHRINK) -> tuple[QuantParams, torch.Tensor]:
    """The clip search of the GPTQ / QuaRot / MoEQuant weight quantizer (`mse=True`): per row (group)
    the shrink p = 1 − i/grid, i = 0 … ⌊maxshrink·grid⌋ − 1, whose grid gives the smallest Σ|Q(w) − w|^norm;
    the first such p on ties. Returns (params at the chosen p, p [..., out, G])."""
    g = w.shape[-1] if group_size is None else group_size
    wg = w.float().reshape(*w.shape[:-1], w.shape[-1] // g, g)
    best_err, best_clip = None, None
    for i in range(int(maxshrink * grid)):
        p = 1.0 - i / grid
        params = compute_params(w, bits, group_size, symmetric, p)
        s, z = params.scale[..., None], params.zero[..., None]
        maxq = _expand(params.maxq, 3).float()
        q = torch.round(wg / s).add_(z).clamp_(min=0.0)
        q = torch.minimum(q, maxq, out=q).sub_(z).mul_(s).sub_(wg)
        err = q.abs_().pow_(norm).sum(-1)  # [..., out, G]
        best_err, best_clip = _keep_better(best_err, best_clip, err, p)
    return compute_params(w, bits, group_size, symmetric, best_clip), best_clip
