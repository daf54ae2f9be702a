"""Worst-case error bounds the kernel tests compare against (derived, not fitted).

Model: an operand rounded to a floating type has relative error ≤ u (round to nearest: u = 2^-(p+1), p explicit
mantissa bits; bf16 2^-8, fp16 2^-11, TF32 2^-11 when rounded, 2^-10 when truncated, fp32 2^-24); products of
the rounded operands are exact in fp32 (≤ 11 + 11 significant bits); summing n terms in fp32 in any order errs by
at most γ_n = n·u32/(1 − n·u32) times the sum of their magnitudes.

For y = x·Wᵀ with W = (Q − Z)·S and only x rounded (the fused MoE kernel: integer codes are exact operands and the
scale/zero are applied to the fp32 tile result as s·(Σ x q − z Σ x)):
    |y − y_exact| ≤ u·(|x|·|W|ᵀ) + γ_{K+4}·(|x|·((Q + Z)·S)ᵀ)
with both operands rounded (the dense W·A16 kernel, weights dequantized then rounded):
    |y − y_exact| ≤ (2u + u²)·(|x|·|W|ᵀ) + γ_{K+4}·(|x|·|W|ᵀ)
The MoE bound propagates this through SiLU(g)·v (|SiLU'| ≤ 1.1), the bf16 rounding of the intermediate as the
down projection's operand, the routing weight and the k-way combine.
"""

from __future__ import annotations

import torch

U32 = 2.0 ** -24
UNIT_ROUNDOFF = {torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11, torch.float32: U32}
SILU_LIPSCHITZ = 1.1


def gamma(n: int) -> float:
    return n * U32 / (1 - n * U32)


def gemm_bound(x: torch.Tensor, w: torch.Tensor, wq_abs: torch.Tensor, u: float, both_rounded: bool = False):
    """Elementwise bound for x [M, K] · w [N, K]ᵀ; wq_abs = (Q + Z)·S (magnitudes the fp32 sums see)."""
    xa, wa = x.double().abs(), w.double().abs()
    k = x.shape[1]
    if both_rounded:
        return (2 * u + u * u + gamma(k + 4)) * (xa @ wa.T)
    return u * (xa @ wa.T) + gamma(k + 4) * (xa @ wq_abs.double().T)


def magnitudes(experts) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, (Q + Z)·S) of every expert, [E, N, K] float64."""
    idx = torch.arange(experts.in_features) // experts.group_size
    w = experts.dequantize().double()
    qz = torch.empty_like(w)
    for e in range(experts.num_experts):
        s = experts.scales[e].T[:, idx].double()
        z = experts.zeros[e].T[:, idx].double()
        qz[e] = (experts.expert_codes(e).double() + z) * s
    return w, qz


def moe_bound(x: torch.Tensor, idx: torch.Tensor, wts: torch.Tensor, gate_up, down, u: float,
              out_dtype: torch.dtype = torch.float32, mags: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(exact float64 reference, elementwise error bound) of the fused MoE layer; `mags` caches
    (magnitudes(gate_up), magnitudes(down)) across calls."""
    (w_gu, qz_gu), (w_d, qz_d) = mags or (magnitudes(gate_up), magnitudes(down))
    inter = down.in_features
    ref = torch.zeros(x.shape[0], down.out_features, dtype=torch.float64)
    bound = torch.zeros_like(ref)
    absum = torch.zeros_like(ref)
    for e in torch.unique(idx).tolist():
        tok, slot = torch.nonzero(idx == e, as_tuple=True)
        xe = x[tok]
        h = xe.double() @ w_gu[e].T
        dh = gemm_bound(xe, w_gu[e], qz_gu[e], u)
        g, v, dg, dv = h[:, :inter], h[:, inter:], dh[:, :inter], dh[:, inter:]
        silu = torch.nn.functional.silu(g)
        a = silu * v
        da = SILU_LIPSCHITZ * dg * (v.abs() + dv) + silu.abs() * dv + 4 * U32 * (silu.abs() * v.abs())
        a_hi = a.abs() + da
        y = a @ w_d[e].T
        dy = (da + u * a_hi) @ w_d[e].abs().T + gamma(inter + 4) * (a_hi @ qz_d[e].T)
        r = wts[tok, slot].double()[:, None]
        ref.index_add_(0, tok, r * y)
        bound.index_add_(0, tok, r.abs() * (dy + 2 * U32 * y.abs()))  # split-K sum/epilogue, weight roundings
        absum.index_add_(0, tok, r.abs() * (y.abs() + dy))
    bound += gamma(idx.shape[1] + 1) * absum  # the fixed-order k-way combine
    if out_dtype != torch.float32:
        bound += UNIT_ROUNDOFF[out_dtype] * (ref.abs() + bound)
    return ref, bound


def assert_within(out: torch.Tensor, ref: torch.Tensor, bound: torch.Tensor, what: str = "") -> float:
    """Fails when any element errs beyond its bound; returns the largest error/bound ratio."""
    err = (out.double() - ref.double()).abs()
    ratio = (err / bound.clamp(min=1e-300)).max().item()
    worst = int((err - bound).argmax())
    assert bool((err <= bound).all()), (f"{what}: error {err.flatten()[worst]:.3e} exceeds bound "
                                        f"{bound.flatten()[worst]:.3e} (max error/bound {ratio:.2f})")
    return ratio
