"""Fused MoE GEMM in which each expert has its own bit width (layout: moeq.kernels.moe_layout).

Per layer: one routing pass on the device (moeq.kernels.routing) shared by both projections; one launch for gate_up
(SiLU(gate)·up fused in the epilogue) and one for down (routing weight in the epilogue), each covering every bit
width present (the block's expert selects its width at run time from the width table; only the widths present
are compiled in); then the k pairs of a token are summed in a fixed order (no atomics: bitwise repeatable).

Inner loop, per 16-k slice: one shift-and-mask of a [16, BLOCK_N] block of plane words (loaded 128 bits wide
along N) gives the integer codes of 16 consecutive k, which go straight into one k16 tensor-core MMA against the
activation slice; each quantization group's scale and zero are applied once to the fp32 partial result.

Numerics: activations enter `tl.dot` as bf16 (fp16 when the model is fp16; fp32 inputs are rounded to bf16), the
weight operand is the integer code q itself (exact in bf16/fp16 for q < 256), accumulation is fp32, and
Σ_k x_k (q_kn − z_n) s_n = s_n·(Σ_k x_k q_kn − z_n Σ_k x_k) with Σ_k x_k precomputed per 16-k slice of the rounded
operand. So the only rounding beyond fp32 accumulation is the activation operand's (unit roundoff u = 2^-8 for
bf16, 2^-11 for fp16): |y − y_exact| ≤ u·(|x|·|W|ᵀ) + γ_fp32 terms (tests/kernels/error_model.py). No TF32.

Split-K (decode): each of up to SPLIT_K CTAs per tile writes an fp32 partial; the partials are summed in a fixed
order and the epilogue applied afterwards.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from moeq.kernels import configs
from moeq.kernels.backend import resolve_backend
from moeq.kernels.moe_layout import MixedBitExperts, k_step
from moeq.kernels.routing import Routing, align_routing


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
def _words(w_ptr, tile, rn, N, nmask):
    """The 16 word rows of one plane tile × columns rn: int32 [16, BLOCK_N], 128-bit loads along N."""
    rr = tile * 16 + tl.arange(0, 16)
    return tl.load(w_ptr + rr[:, None] * N + rn[None, :], mask=nmask[None, :], other=0)


@triton.jit
def _scaled(acc, part, s_ptr, z_ptr, xs_ptr, a_rows, valid, g, G, u0, KU, N, rn, nmask, NU: tl.constexpr):
    """acc + s_g·(Σ_k x q − z_g·Σ_k x) over the NU 16-k slices from slice u0 (all in group g). Slices past K
    have zero activations and zero sums, so clamping g to the last group adds nothing for them."""
    g = tl.minimum(g, G - 1)
    s = tl.load(s_ptr + g * N + rn, mask=nmask, other=0.0)
    z = tl.load(z_ptr + g * N + rn, mask=nmask, other=0.0)
    xs = tl.zeros_like(a_rows.to(tl.float32))
    u = u0 + tl.zeros_like(a_rows)  # a vector, so that the mask below is elementwise
    for t in tl.static_range(NU):
        xs += tl.load(xs_ptr + a_rows * KU + u + t, mask=valid & (u + t < KU), other=0.0)
    return acc + s[None, :] * (part - z[None, :] * xs[:, None])


@triton.jit
def _expert_loop(a_ptr, xs_ptr, a_rows, valid, w_ptr, s_ptr, z_ptr, rn, half_n, N, K, G, k_lo, k_hi, nmask,
                 BITS: tl.constexpr, GATED: tl.constexpr, GROUP: tl.constexpr, OP: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """One expert's [BLOCK_M, BLOCK_N] tile over k ∈ [k_lo, k_hi): per 16-k slice, one shift-and-mask of the
    plane words, one k16 MMA on the integer codes, the group's scale/zero once per group on the fp32 result."""
    PB: tl.constexpr = 8 if BITS == 8 else (4 if BITS == 4 else 2)  # the first plane's width
    CPW: tl.constexpr = 32 // PB
    STEP: tl.constexpr = 512 if BITS == 3 else 16 * CPW  # K per loop trip: one tile of the narrowest plane
    SUBS: tl.constexpr = STEP // 16
    GSUB: tl.constexpr = GROUP // 16 if GROUP < STEP else SUBS  # 16-k slices per scale application
    k_pad = (K + STEP - 1) // STEP * STEP
    hi_ptr = w_ptr + (k_pad // CPW) * N  # 3-bit: the 1-bit plane follows the 2-bit plane
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    acc_up = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(k_lo, k_hi, STEP):
        for j in tl.static_range(SUBS):
            if j % GSUB == 0:
                part = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
                part_up = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
            if j % CPW == 0:
                w0 = _words(w_ptr, (k0 // 16 + j) // CPW, rn, N, nmask)
                if GATED:
                    w0_up = _words(w_ptr, (k0 // 16 + j) // CPW, rn + half_n, N, nmask)
            if BITS == 3:
                if j % 32 == 0:
                    w1 = _words(hi_ptr, (k0 // 16 + j) // 32, rn, N, nmask)
                    if GATED:
                        w1_up = _words(hi_ptr, (k0 // 16 + j) // 32, rn + half_n, N, nmask)
            rk = k0 + j * 16 + tl.arange(0, 16)
            a = tl.load(a_ptr + a_rows[:, None] * K + rk[None, :], mask=valid[:, None] & (rk[None, :] < K),
                        other=0.0).to(OP)
            q = (w0 >> ((j % CPW) * PB)) & ((1 << PB) - 1)
            if BITS == 3:
                q = q | (((w1 >> (j % 32)) & 1) << 2)
            part = tl.dot(a, q.to(OP), part, out_dtype=tl.float32)
            if GATED:  # the matching "up" columns are half_n further along N
                q_up = (w0_up >> ((j % CPW) * PB)) & ((1 << PB) - 1)
                if BITS == 3:
                    q_up = q_up | (((w1_up >> (j % 32)) & 1) << 2)
                part_up = tl.dot(a, q_up.to(OP), part_up, out_dtype=tl.float32)
            if j % GSUB == GSUB - 1:
                g = (k0 + j * 16) // GROUP
                u0 = k0 // 16 + j + 1 - GSUB
                acc = _scaled(acc, part, s_ptr, z_ptr, xs_ptr, a_rows, valid, g, G, u0, K // 16, N, rn, nmask, GSUB)
                if GATED:
                    acc_up = _scaled(acc_up, part_up, s_ptr, z_ptr, xs_ptr, a_rows, valid, g, G, u0, K // 16, N,
                                     rn + half_n, nmask, GSUB)
    return acc, acc_up


@triton.jit
def _moe_kernel(a_ptr, xs_ptr, pairs_ptr, block_expert_ptr, qw_ptr, offsets_ptr, bits_ptr, s_ptr, z_ptr,
                route_w_ptr, out_ptr, n_pairs, N, N_COLS, K, G, row_div, k_split, split_stride,
                GATED: tl.constexpr, WEIGHTED: tl.constexpr, FUSED_EPILOGUE: tl.constexpr, GROUP: tl.constexpr,
                WIDTHS: tl.constexpr, OP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
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
                acc, acc_up = _expert_loop(a_ptr, xs_ptr, a_rows, valid, w_ptr, s_ptr_e, z_ptr_e, rn, half_n, N, K, G,
                                           k_lo, k_hi, nmask, 4, GATED, GROUP, OP, BLOCK_M, BLOCK_N)
        if (WIDTHS >> 2) & 1:
            if bits == 2:
                acc, acc_up = _expert_loop(a_ptr, xs_ptr, a_rows, valid, w_ptr, s_ptr_e, z_ptr_e, rn, half_n, N, K, G,
                                           k_lo, k_hi, nmask, 2, GATED, GROUP, OP, BLOCK_M, BLOCK_N)
        if (WIDTHS >> 3) & 1:
            if bits == 3:
                acc, acc_up = _expert_loop(a_ptr, xs_ptr, a_rows, valid, w_ptr, s_ptr_e, z_ptr_e, rn, half_n, N, K, G,
                                           k_lo, k_hi, nmask, 3, GATED, GROUP, OP, BLOCK_M, BLOCK_N)
        if (WIDTHS >> 8) & 1:
            if bits == 8:
                acc, acc_up = _expert_loop(a_ptr, xs_ptr, a_rows, valid, w_ptr, s_ptr_e, z_ptr_e, rn, half_n, N, K, G,
                                           k_lo, k_hi, nmask, 8, GATED, GROUP, OP, BLOCK_M, BLOCK_N)
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


PER_CHANNEL = 1 << 30  # GROUP for one group spanning K (g = 0 everywhere)


def check_layout(experts: MixedBitExperts) -> None:
    """A kernel step (64…512 codes of K) must lie inside one group or hold whole groups; K in 16-k slices."""
    g, k = experts.group_size, experts.in_features
    if k % 16:
        raise ValueError(f"the fused kernel needs in_features divisible by 16, got {k}")
    if not (g == k or g % 512 == 0 or (g >= 16 and g & (g - 1) == 0)):
        raise ValueError(f"the fused kernel needs a power-of-two group size ≥ 16, a multiple of 512 or one group per "
                         f"row, got {g}")


def _launch(a: torch.Tensor, routing: Routing, experts: MixedBitExperts, row_div: int, gated: bool,
            route_w: torch.Tensor | None, cfg: configs.MoeConfig, op: torch.dtype) -> torch.Tensor:
    n, k = experts.out_features, experts.in_features
    n_cols = n // 2 if gated else n
    p = routing.n_pairs
    g = experts.scales.shape[1]
    group = PER_CHANNEL if experts.group_size == k else experts.group_size
    a_op = a.to(op)
    xs = a_op.float().view(a.shape[0], k // 16, 16).sum(-1).contiguous()  # Σ x per 16-k slice of the rounded operand
    step = max(k_step(b) for b in experts.widths)
    k_split = triton.cdiv(triton.cdiv(k, cfg.split_k), step) * step  # split boundaries on every width's step
    split = triton.cdiv(k, k_split)
    fused = split == 1
    out = torch.empty((p, n_cols) if fused else (split, p, n), dtype=torch.float32, device=a.device)
    grid = (routing.n_blocks, triton.cdiv(n_cols, cfg.block_n), split)
    _moe_kernel[grid](a_op, xs, routing.sorted_pairs, routing.block_expert, experts.qweight, experts.offsets,
                      experts.bits, experts.scales, experts.zeros, route_w if route_w is not None else xs, out, p, n,
                      n_cols, k, g, row_div, k_split, p * n,
                      GATED=gated, WEIGHTED=route_w is not None, FUSED_EPILOGUE=fused, GROUP=group,
                      WIDTHS=sum(1 << b for b in experts.widths),
                      OP=tl.float16 if op == torch.float16 else tl.bfloat16, BLOCK_M=cfg.block_m,
                      BLOCK_N=cfg.block_n, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
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
