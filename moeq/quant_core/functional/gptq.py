"""GPTQ (Frantar et al.) as a pure, batched tensor function.

Solves many independent problems at once: W [n, out, in] with Hessians H [n, in, in] (one per
expert) share one batched Cholesky and one column loop, so 64+ experts do not run one by one.
Blocks of `block_size` columns with lazy error feedback (two levels: rank-1 updates inside
sub-blocks of 16 columns, matmuls across sub-blocks and blocks — the same arithmetic as the
one-level loop up to float rounding, with far less memory traffic on wide batches); optional act-order (static groups);
group scales fixed when a group starts (from the error-updated weights); dampening `damp`·mean(diag H).
See docs/methods.md "GPTQ".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from moeq.quant_core.functional.affine import Bits, QuantParams, compute_params, quantize, resolve_group_size
from moeq.quant_core.functional.clip import mse_clip


@dataclass(frozen=True)
class GptqResult:
    weight: torch.Tensor  # dequantized, on the grid, [n, out, in] float32
    codes: torch.Tensor  # uint8 [n, out, in]
    params: QuantParams  # scales/zeros [n, out, G]
    loss: torch.Tensor  # [n] sum of (w−q)²/d² proxy loss (GPTQ's objective)


def _prepare_hessian(H: torch.Tensor, W: torch.Tensor, damp: float, scratch: bool) -> tuple[torch.Tensor, torch.Tensor]:
    H = H.float() if scratch else H.clone().float()  # damped in place: the caller's scratch Hessians, or a copy
    diag = torch.diagonal(H, dim1=-2, dim2=-1)
    dead = diag == 0
    diag[dead] = 1.0
    W = W.masked_fill_(dead[:, None, :], 0.0)  # W is the caller's own work copy
    mean_diag = diag.mean(dim=-1, keepdim=True)
    diag += damp * mean_diag
    return H, W


def _inverse_cholesky(H: torch.Tensor) -> torch.Tensor:
    """Upper Cholesky factor of H⁻¹; adds more dampening when H is not positive definite.
    H + extra·mean(diag H)·I is formed in H itself, whose diagonal is restored for the next try:
    adding the identity's zeros leaves the other entries as H + 0.0 (which turns −0.0 into +0.0)."""
    mean_diag = torch.diagonal(H, dim1=-2, dim2=-1).mean(dim=-1)[:, None]
    H.add_(0.0)
    diag = torch.diagonal(H, dim1=-2, dim2=-1)
    base = diag.clone()
    for extra in (0.0, 0.01, 0.1, 1.0, 10.0):
        diag.copy_(base + extra * mean_diag)
        L, info = torch.linalg.cholesky_ex(H)
        if int(info.max()) == 0:
            inverse = torch.cholesky_inverse(L)
            del L
            U, info2 = torch.linalg.cholesky_ex(inverse, upper=True)
            if int(info2.max()) == 0:
                return U
            del inverse, U
    raise torch.linalg.LinAlgError("Hessian is not positive definite even after extra dampening")


def _params(w: torch.Tensor, bits, group_size: int | None, symmetric: bool, clip, mse: bool) -> QuantParams:
    return mse_clip(w, bits, group_size, symmetric)[0] if mse else compute_params(w, bits, group_size, symmetric, clip)


SUB_BLOCK = 16  # columns updated one by one; a matmul carries their errors to the rest of the block


def _sub_blocks(i1: int, i2: int, g: int) -> list[tuple[int, int]]:
    """[i1, i2) cut every SUB_BLOCK columns and at every group start (a group's scales are fixed
    from weights that have received every earlier column's error)."""
    cuts = sorted({*range(i1, i2, SUB_BLOCK), *range(-(-i1 // g) * g, i2, g), i2})
    return list(zip(cuts[:-1], cuts[1:]))


def gptq_quantize(W: torch.Tensor, H: torch.Tensor, bits: Bits, group_size: int | None, symmetric: bool,
                  *, block_size: int = 128, damp: float = 0.01, act_order: bool = False,
                  clip: float = 1.0, mse: bool = False, scratch: bool = False) -> GptqResult:
    """Quantize W [n, out, in] (or [out, in]) given H [n, in, in] (or [in, in]). `mse`: every group's
    clip by the reference quantizer's search (moeq.quant_core.functional.clip.mse_clip) instead of `clip`.
    `scratch`: W and H are the caller's own copies, overwritten here instead of copied (float32 W and
    H then cost no second copy)."""
    squeeze = W.dim() == 2
    if squeeze:
        W, H = W[None], H[None]
    n, rows, cols = W.shape
    g = resolve_group_size(cols, group_size)
    W = W.float() if scratch else W.float().clone()
    H, W = _prepare_hessian(H, W, damp, scratch)
    bits_t = torch.as_tensor(bits, dtype=torch.int64, device=W.device)

    perm = None
    static_params = None
    if act_order:
        perm = torch.argsort(torch.diagonal(H, dim1=-2, dim2=-1), dim=-1, descending=True)  # [n, cols]
        if g < cols:  # groups follow the original column order: fix their params up front
            static_params = _params(W, bits_t, g, symmetric, clip, mse)
        W = W.gather(2, perm[:, None, :].expand(-1, rows, -1))
        H = H.gather(1, perm[:, :, None].expand(-1, -1, cols))  # rows, then columns: two [n, in, in] at a time
        H = H.gather(2, perm[:, None, :].expand(-1, cols, -1))
    if g == cols:
        static_params = _params(W, bits_t, None, symmetric, clip, mse)

    U = _inverse_cholesky(H)
    del H  # only its factor is used from here on
    Q = torch.zeros_like(W)
    losses = torch.zeros(n, device=W.device)
    n_groups = cols // g
    scales = torch.zeros(n, rows, n_groups, device=W.device)
    zeros = torch.zeros_like(scales)
    maxq = ((2 ** bits_t) - 1).float().reshape(-1, 1, 1) if bits_t.dim() else (2 ** bits_t - 1).float()
    if static_params is not None and g == cols:
        s_col, z_col = static_params.scale, static_params.zero  # [n, rows, 1] for every column

    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1 = W[:, :, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        E1 = torch.zeros_like(W1)
        U1 = U[:, i1:i2, i1:i2]
        d1 = torch.diagonal(U1, dim1=-2, dim2=-1)[:, None, :]  # [n, 1, B]
        if static_params is not None and g < cols:  # act-order: each column's group in the original order
            gi = (perm[:, i1:i2] // g)[:, None, :].expand(-1, rows, -1)
            s_blk, z_blk = static_params.scale.gather(2, gi), static_params.zero.gather(2, gi)  # [n, rows, B]
        for j1, j2 in _sub_blocks(i1, i2, g):
            for i in range(j1 - i1, j2 - i1):
                col = i1 + i
                if static_params is not None and g < cols:
                    s_col, z_col = s_blk[:, :, i:i + 1], z_blk[:, :, i:i + 1]
                elif static_params is None and col % g == 0:  # a group starts: fix its scales from current weights
                    span = torch.cat([W1[:, :, i:], W[:, :, i2:]], dim=2)[:, :, :g]
                    current = _params(span, bits_t, None, symmetric, clip, mse)
                    s_col, z_col = current.scale, current.zero
                    scales[:, :, col // g] = s_col[..., 0]
                    zeros[:, :, col // g] = z_col[..., 0]
                w = W1[:, :, i:i + 1]
                q = torch.round(w / s_col).add_(z_col).clamp_(min=0.0)
                q = torch.minimum(q, maxq, out=q).sub_(z_col).mul_(s_col)
                Q1[:, :, i:i + 1] = q
                err = (w - q).div_(d1[:, :, i:i + 1])
                W1[:, :, i + 1:j2 - i1] -= err * U1[:, i:i + 1, i + 1:j2 - i1]  # rank-1 within the sub-block
                E1[:, :, i:i + 1] = err
            if j2 < i2:  # the sub-block's errors reach the rest of the block in one matmul
                W1[:, :, j2 - i1:] -= E1[:, :, j1 - i1:j2 - i1] @ U1[:, j1 - i1:j2 - i1, j2 - i1:]
        losses += (E1 ** 2).sum(dim=(1, 2)) / 2
        Q[:, :, i1:i2] = Q1
        W[:, :, i2:] -= E1 @ U[:, i1:i2, i2:]

    del W, U  # the work copies are done with before the codes are computed
    if perm is not None:
        inv = torch.argsort(perm, dim=-1)
        Q = Q.gather(2, inv[:, None, :].expand(-1, rows, -1))
    params = static_params if static_params is not None else QuantParams(scales, zeros, bits_t, g, symmetric)
    codes = quantize(Q, params)
    result = GptqResult(weight=Q, codes=codes, params=params, loss=losses)
    if squeeze:
        result = GptqResult(Q[0], codes[0], QuantParams(params.scale[0], params.zero[0],
                                                        params.bits if params.bits.dim() == 0 else params.bits[0],
                                                        g, symmetric), losses[0])
    return result


def hessian(x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """H = 2/N Σ_t c_t x_t x_tᵀ for inputs x [N, in] (c_t = 1 when `weights` is None)."""
    x = x.float()
    if weights is not None:
        x = x * weights.float().clamp(min=0).sqrt()[:, None]
    return (x.T @ x).mul_(2.0).div_(max(1, x.shape[0]))  # 2.0 · xᵀx / N, without a second [in, in] temporary
