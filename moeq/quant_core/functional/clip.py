"""Clip-ratio search: per output channel (group), the clip c ∈ [c_min, 1] minimizing ‖W − Q_c(W)‖²."""

from __future__ import annotations

import torch

from moeq.quant_core.functional.affine import Bits, QuantParams, compute_params, quant_error


def search_clip(w: torch.Tensor, bits: Bits, group_size: int | None, symmetric: bool,
                clip_min: float = 0.35, steps: int = 14) -> tuple[QuantParams, torch.Tensor]:
    """Return (params at the best clip, best clip ratios [..., out, G]) by grid search."""
    best_err = None
    best_clip = None
    for c in torch.linspace(clip_min, 1.0, steps).tolist() if steps > 1 else [1.0]:
        err = quant_error(w, compute_params(w, bits, group_size, symmetric, c))
        if best_err is None:
            best_err, best_clip = err, torch.full_like(err, c)
        else:
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_clip = torch.where(better, torch.full_like(err, c), best_clip)
    return compute_params(w, bits, group_size, symmetric, best_clip), best_clip
