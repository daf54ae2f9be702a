"""Fused MoE GEMM in which each expert has its own bit width (layout: kernels.moe_layout).

Per layer: one routing pass on the device (kernels.routing) shared by both projections; one launch for gate_up
(SiLU(gate)·up fused in the epilogue) and one for down (routing weight in the epilogue), each covering every bit
width (the block's expert selects its width at run time); then the k pairs of a token are summed in a fixed order
(no atomics, so results are bitwise repeatable).

Numerics: activations enter `tl.dot` as bf16 (fp16 when the model is fp16; fp32 inputs are rounded to bf16), the
weight operand is the integer code q itself (exact in bf16/fp16 for q < 256), accumulation is fp32, and the group
scale/zero are applied to the fp32 tile result: Σ_k x_k (q_kn − z_n) s_n = s_n·(Σ_k x_k q_kn − z_n Σ_k x_k). So the
only rounding beyond fp32 accumulation is the activation operand's (unit roundoff u = 2^-8 for bf16, 2^-11 for
fp16): |y − y_exact| ≤ u·(|x|·|W|ᵀ) + γ_fp32 terms (tests/kernels/error_model.py states the bound the tests use).
No TF32 anywhere.

Split-K (decode): each of SPLIT_K CTAs per tile writes an fp32 partial; the partials are summed in a fixed order
and the epilogue applied afterwards.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from kernels import configs
from kernels.backend import resolve_backend
from kernels.moe_layout import MixedBitExperts
from kernels.routing import Routing, align_routing


def operand_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dot operand type for activations of `dtype` (never fp32: that would be TF32 on the GPU)."""
    return torch.float16 if dtype == torch.float16 else torch.bfloat16


def fused_moe_ref(hidden: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor,
                  gate_up: MixedBitExperts, down: MixedBitExperts, act_quant=None) -> torch.Tensor:
    """Dequantize and loop over experts in float32 (experts without tokens are skipped)."""
    w_gu, w_d = gate_up.dequantize(), down.dequantize()
    inter_dim = down.in_features
    out = torch.zeros(hidden.shape[0], down.out_features, dtype=torch.float32, device=hidden.device)
    for e in range(gate_up.num_experts):
        tok, slot = torch.nonzero(top_k_index == e, as_tuple=True)
        if tok.numel() == 0:
            continue
        h = hidden[tok].float() @ w_gu[e].T
        a = F.silu(h[:, :inter_dim]) * h[:, inter_dim:]
        if act_quant is not None:
            a = act_quant(a)
        y = (a @ w_d[e].T) * top_k_weights[tok, slot, None].float()
        out.index_add_(0, tok, y)
    return out.to(hidden.dtype)


@triton.jit
def _plane_tile(w_ptr, row0, rn, N, nmask, PB: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    """Codes of one plane for k rows [row0·cpw, row0·cpw + BLOCK_K) × columns rn, as int32 [BLOCK_K, BLOCK_N]."""
    CPW: tl.constexpr = 32 // PB
    R: tl.constexpr = BLOCK_K // CPW
    rr = row0 + tl.arange(0, R)
    words = tl.load(w_ptr + rr[:, None] * N + rn[None, :], mask=nmask[None, :], other=0)
    shifts = tl.arange(0, CPW) * PB
    codes = (words[:, None, :] >> shifts[None, :, None]) & ((1 << PB) - 1)
    return tl.reshape(codes, (BLOCK_K, BLOCK_N))


@triton.jit
def _codes(w_ptr, k0, rn, N, K_PAD, nmask, BITS: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    if BITS == 3:  # a 2-bit plane and a 1-bit plane
        lo = _plane_tile(w_ptr, k0 // 16, rn, N, nmask, 2, BLOCK_K, BLOCK_N)
        hi = _plane_tile(w_ptr + (K_PAD // 16) * N, k0 // 32, rn, N, nmask, 1, BLOCK_K, BLOCK_N)
        return lo | (hi << 2)
    else:
        return _plane_tile(w_ptr, k0 // (32 // BITS), rn, N, nmask, BITS, BLOCK_K, BLOCK_N)


@triton.jit
def _expert_loop(a_ptr, a_rows, valid, w_ptr, s_ptr, z_ptr, rn, half_n, N, K, K_PAD, k_lo, k_hi, nmask,
                 BITS: tl.constexpr, GATED: tl.constexpr, GROUP: tl.constexpr, OP: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    acc_up = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(k_lo, k_hi, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(a_ptr + a_rows[:, None] * K + rk[None, :], mask=valid[:, None] & (rk[None, :] < K), other=0.0)
        a = a.to(OP)
        a_sum = tl.sum(a.to(tl.float32), axis=1)
        g_off = (k0 // GROUP) * N
        q = _codes(w_ptr, k0, rn, N, K_PAD, nmask, BITS, BLOCK_K, BLOCK_N)
        d = tl.dot(a, q.to(OP), out_dtype=tl.float32)
        s = tl.load(s_ptr + g_off + rn, mask=nmask, other=0.0)
        z = tl.load(z_ptr + g_off + rn, mask=nmask, other=0.0)
        acc += s[None, :] * (d - z[None, :] * a_sum[:, None])
        if GATED:  # the matching "up" columns are half_n further along N
            q_u = _codes(w_ptr, k0, rn + half_n, N, K_PAD, nmask, BITS, BLOCK_K, BLOCK_N)
            d_u = tl.dot(a, q_u.to(OP), out_dtype=tl.float32)
            s_u = tl.load(s_ptr + g_off + half_n + rn, mask=nmask, other=0.0)
            z_u = tl.load(z_ptr + g_off + half_n + rn, mask=nmask, other=0.0)
            acc_up += s_u[None, :] * (d_u - z_u[None, :] * a_sum[:, None])
    return acc, acc_up


@triton.jit
def _moe_kernel(a_ptr, pairs_ptr, block_expert_ptr, qw_ptr, offsets_ptr, bits_ptr, s_ptr, z_ptr, route_w_ptr,
                out_ptr, n_pairs, N, N_COLS, K, K_PAD, G, row_div, k_split, split_stride,
                GATED: tl.constexpr, WEIGHTED: tl.constexpr, FUSED_EPILOGUE: tl.constexpr, GROUP: tl.constexpr,
                WIDTHS: tl.constexpr, OP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_k = tl.program_id(2)
    e = tl.load(block_expert_ptr + pid_m)
    if e >= 0:
        rows = tl.load(pairs_ptr + pid_m * BLOCK_M + tl.arange(0, BLOCK_M))
        valid = rows < n_pairs
        a_rows = rows // row_div
        half_n = N_COLS  # gated: N = 2·N_COLS (gate columns, then up columns)
        n_cols = N_COLS
        rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        nmask = rn < n_cols
        bits = tl.load(bits_ptr + e)
        w_ptr = qw_ptr + tl.multiple_of(tl.load(offsets_ptr + e), 16)  # experts start on 64-byte boundaries
        s_ptr_e = s_ptr + e.to(tl.int64) * G * N
        z_ptr_e = z_ptr + e.to(tl.int64) * G * N
        k_lo = pid_k * k_split
        k_hi = tl.minimum(k_lo + k_split, K)
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        acc_up = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        # WIDTHS: bit mask of the widths present in this projection; only those loops are compiled
        if (WIDTHS >> 4) & 1:
            if bits == 4:
                acc, acc_up = _expert_loop(a_ptr, a_rows, valid, w_ptr, s_ptr_e, z_ptr_e, rn, half_n, N, K, K_PAD,
                                           k_lo, k_hi, nmask, 4, GATED, GROUP, OP, BLOCK_M, BLOCK_N, BLOCK_K)
        if (WIDTHS >> 2) & 1:
            if bits == 2:
                acc, acc_up = _expert_loop(a_ptr, a_rows, valid, w_ptr, s_ptr_e, z_ptr_e, rn, half_n, N, K, K_PAD,
                                           k_lo, k_hi, nmask, 2, GATED, GROUP, OP, BLOCK_M, BLOCK_N, BLOCK_K)
        if (WIDTHS >> 3) & 1:
            if bits == 3:
                acc, acc_up = _expert_loop(a_ptr, a_rows, valid, w_ptr, s_ptr_e, z_ptr_e, rn, half_n, N, K, K_PAD,
                                           k_lo, k_hi, nmask, 3, GATED, GROUP, OP, BLOCK_M, BLOCK_N, BLOCK_K)
        if (WIDTHS >> 8) & 1:
            if bits == 8:
                acc, acc_up = _expert_loop(a_ptr, a_rows, valid, w_ptr, s_ptr_e, z_ptr_e, rn, half_n, N, K, K_PAD,
                                           k_lo, k_hi, nmask, 8, GATED, GROUP, OP, BLOCK_M, BLOCK_N, BLOCK_K)
        omask = valid[:, None] & nmask[None, :]
        if FUSED_EPILOGUE:
            if GATED:
                acc = acc / (1.0 + tl.exp(-acc)) * acc_up
            if WEIGHTED:
                rw = tl.load(route_w_ptr + rows, mask=valid, other=0.0).to(tl.float32)
                acc = acc * rw[:, None]
            tl.store(out_ptr + rows[:, None] * n_cols + rn[None, :], acc, mask=omask)
        else:  # raw split-K partial of [gate | up] (or of the output): summed and finished outside
            base = out_ptr + pid_k * split_stride + rows[:, None] * N + rn[None, :]
            tl.store(base, acc, mask=omask)
            if GATED:
                tl.store(base + half_n, acc_up, mask=omask)


def check_layout(experts: MixedBitExperts) -> None:
    g, k = experts.group_size, experts.in_features
    if g % 32 and g != k:
        raise ValueError(f"the fused kernel needs a group size that is a multiple of 32 (or per-channel), got {g}")


def _launch(a: torch.Tensor, routing: Routing, experts: MixedBitExperts, row_div: int, gated: bool,
            route_w: torch.Tensor | None, cfg: configs.MoeConfig, op: torch.dtype) -> torch.Tensor:
    n, k = experts.out_features, experts.in_features
    n_cols = n // 2 if gated else n
    p = routing.n_pairs
    k_pad = -(-k // 32) * 32
    bk = cfg.block_k  # a K tile must lie inside one group and inside the padded K (no reads past an expert)
    while bk > 32 and ((experts.group_size % bk and experts.group_size != k) or k_pad % bk):
        bk //= 2
    split = cfg.split_k
    k_split = triton.cdiv(triton.cdiv(k, split), bk) * bk
    split = triton.cdiv(k, k_split)
    fused = split == 1
    out = torch.empty((p, n_cols) if fused else (split, p, n), dtype=torch.float32, device=a.device)
    grid = (routing.n_blocks, triton.cdiv(n_cols, cfg.block_n), split)
    _moe_kernel[grid](a, routing.sorted_pairs, routing.block_expert, experts.qweight, experts.offsets, experts.bits,
                      experts.scales, experts.zeros, route_w if route_w is not None else a, out, p, n, n_cols, k,
                      k_pad, experts.scales.shape[1], row_div, k_split, p * n,
                      GATED=gated, WEIGHTED=route_w is not None, FUSED_EPILOGUE=fused, GROUP=experts.group_size,
                      WIDTHS=sum(1 << b for b in experts.widths),
                      OP=tl.float16 if op == torch.float16 else tl.bfloat16, BLOCK_M=cfg.block_m,
                      BLOCK_N=cfg.block_n, BLOCK_K=bk, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    if fused:
        return out
    total = out.sum(0)  # fixed-order reduction over the splits
    if gated:
        total = F.silu(total[:, :n_cols]) * total[:, n_cols:]
    if route_w is not None:
        total = total * route_w[:, None]
    return total


def _check(hidden, top_k_index, top_k_weights, gate_up: MixedBitExperts, down: MixedBitExperts) -> None:
    t, d = hidden.shape
    if top_k_index.shape != top_k_weights.shape or top_k_index.shape[0] != t:
        raise ValueError(f"top_k_index {tuple(top_k_index.shape)} / weights {tuple(top_k_weights.shape)} "
                         f"do not match {t} tokens")
    if gate_up.in_features != d or down.out_features != d or gate_up.out_features != 2 * down.in_features:
        raise ValueError("gate_up must be [n, 2I, d] and down [n, d, I] for hidden size d")
    if gate_up.num_experts != down.num_experts:
        raise ValueError("gate_up and down have different numbers of experts")
    for ex in (gate_up, down):
        if ex.device != hidden.device:
            raise ValueError(f"weights on {ex.device}, hidden states on {hidden.device}")


def fused_moe(hidden: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor,
              gate_up: MixedBitExperts, down: MixedBitExperts, backend: str = "auto", act_quant=None,
              config: configs.MoeConfig | None = None) -> torch.Tensor:
    """Σ_j w[t, j] · down_e(SiLU(gate_e(x_t)) · up_e(x_t)) with e = top_k_index[t, j], mixed bit widths."""
    _check(hidden, top_k_index, top_k_weights, gate_up, down)
    t, top_k = top_k_index.shape
    sc = configs.shape_class(t, hidden.shape[1], down.in_features, gate_up.num_experts, top_k)
    if resolve_backend(backend, hidden.device, sc) == "torch":
        return fused_moe_ref(hidden, top_k_index, top_k_weights, gate_up, down, act_quant)
    check_layout(gate_up)
    check_layout(down)
    op = operand_dtype(hidden.dtype)
    cfg_gu = config or configs.pick(t, gate_up.in_features)
    cfg_d = config or configs.pick(t, down.in_features)
    if cfg_gu.block_m != cfg_d.block_m:
        cfg_d = dataclasses.replace(cfg_d, block_m=cfg_gu.block_m)  # one routing serves both launches
    routing = align_routing(top_k_index, gate_up.num_experts, cfg_gu.block_m)  # shared by both projections
    inter = _launch(hidden.contiguous(), routing, gate_up, top_k, True, None, cfg_gu, op)
    if act_quant is not None:
        inter = act_quant(inter)
    out_pairs = _launch(inter, routing, down, 1, False, top_k_weights.reshape(-1).float().contiguous(), cfg_d, op)
    return out_pairs.reshape(t, top_k, -1).sum(1).to(hidden.dtype)  # fixed-order combine, no atomics


def weight_bytes_touched(experts: MixedBitExperts, active: torch.Tensor) -> int:
    """Bytes of packed weights + scales/zeros of the experts in `active` (bandwidth-bound estimate)."""
    return sum(experts.expert_bytes(e) for e in sorted(set(active.tolist())))
