"""SmoothQuant scale computation: s_j = max|X_j|^α / max|W_{:,j}|^(1−α) (docs/methods.md "SmoothQuant")."""

from __future__ import annotations

import torch

EPS = 1e-5


def smooth_scales(act_absmax: torch.Tensor, weight_absmax: torch.Tensor, alpha: float) -> torch.Tensor:
    """Per-channel factors from activation and weight column maxima (both [in]); clamped positive."""
    a = act_absmax.float().clamp(min=EPS)
    w = weight_absmax.float().clamp(min=EPS)
    s = a.pow(alpha) / w.pow(1.0 - alpha)
    return s.clamp(min=EPS)


def column_absmax(*weights: torch.Tensor) -> torch.Tensor:
    """max over output rows (and over all given matrices [.., out, in]) of |W_{:,j}|."""
    cols = [w.detach().float().abs().reshape(-1, w.shape[-1]).amax(dim=0) for w in weights]
    return torch.stack(cols).amax(dim=0)
