"""W{2,3,4,8}A16 GEMM: y = x · dequant(W)ᵀ with W packed b-bit codes and per-group scales/zeros.

x [M, K] (fp16/bf16/fp32), packed [N, W] int32 (moeq.kernels.packing layout), scales/zeros [N, K/g].
The kernel unpacks a [BLOCK_K, BLOCK_N] tile of codes in registers, dequantizes with the tile's
group scale, and accumulates in fp32; weights never exist in full precision in memory. Both dot operands are
bf16 (fp16 for fp16 activations), never fp32 (= TF32 on the GPU): error ≤ (2u + u²)·(|x|·|W|ᵀ) + fp32 accumulation,
u the operand type's unit roundoff (tests/kernels/error_model.py).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from moeq.kernels.backend import resolve_backend
from moeq.kernels.packing import packed_words, unpack_ref


def dequantize_packed(packed: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, bits: int, k: int,
                      group_size: int) -> torch.Tensor:
    """Full-precision [N, K] weights (float32) from packed codes — the reference's dequantizer."""
    codes = unpack_ref(packed, bits, k).float()
    idx = torch.arange(k, device=packed.device) // group_size
    return (codes - zeros.float()[:, idx]) * scales.float()[:, idx]


def wxa16_gemm_ref(x: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, bits: int,
                   group_size: int) -> torch.Tensor:
    w = dequantize_packed(packed, scales, zeros, bits, x.shape[-1], group_size)
    return (x.float() @ w.T).to(x.dtype)


@triton.jit
def _load_codes(packed_ptr, n_idx, k_idx, W, mask, BITS: tl.constexpr):
    """Codes for a [BLOCK_K, BLOCK_N] tile: element (k, n) is code k of row n."""
    pos = k_idx * BITS
    word = pos // 32
    shift = (pos % 32).to(tl.uint32)
    base = packed_ptr + n_idx * W
    lo = tl.load(base + word, mask=mask, other=0).to(tl.uint32, bitcast=True)
    if BITS == 3:
        hi = tl.load(base + tl.minimum(word + 1, W - 1), mask=mask, other=0).to(tl.uint32, bitcast=True)
        lo = (lo >> shift) | tl.where(shift > 29, hi << (32 - shift), 0)
    else:
        lo = lo >> shift
    return (lo & ((1 << BITS) - 1)).to(tl.float32)


@triton.jit
def _wxa16_kernel(x_ptr, packed_ptr, scale_ptr, zero_ptr, y_ptr, M, N, K, W, G, group_size,
                  BITS: tl.constexpr, OP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + rm[:, None] * K + rk[None, :], mask=(rm[:, None] < M) & (rk[None, :] < K), other=0.0)
        wmask = (rk[:, None] < K) & (rn[None, :] < N)
        codes = _load_codes(packed_ptr, rn[None, :], rk[:, None], W, wmask, BITS)
        g = rk[:, None] // group_size
        s = tl.load(scale_ptr + rn[None, :] * G + g, mask=wmask, other=0.0).to(tl.float32)
        z = tl.load(zero_ptr + rn[None, :] * G + g, mask=wmask, other=0.0).to(tl.float32)
        w = ((codes - z) * s).to(OP)
        acc += tl.dot(x.to(OP), w, out_dtype=tl.float32)
    tl.store(y_ptr + rm[:, None] * N + rn[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=(rm[:, None] < M) & (rn[None, :] < N))


def check_quantized(packed: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, bits: int, k: int,
                    group_size: int) -> None:
    n = packed.shape[0]
    if k % group_size:
        raise ValueError(f"group size {group_size} does not divide K={k}")
    if packed.dtype != torch.int32 or packed.shape != (n, packed_words(k, bits)):
        raise ValueError(f"packed must be int32 [{n}, {packed_words(k, bits)}], got {packed.dtype} {tuple(packed.shape)}")
    if scales.shape != (n, k // group_size) or zeros.shape != scales.shape:
        raise ValueError(f"scales/zeros must be [{n}, {k // group_size}], got {tuple(scales.shape)}/{tuple(zeros.shape)}")


def wxa16_gemm(x: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, bits: int,
               group_size: int, backend: str = "auto") -> torch.Tensor:
    """y [M, N] = x [M, K] · dequant(W)ᵀ."""
    if x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"x must be a 2-D floating tensor, got {x.dtype} {tuple(x.shape)}")
    check_quantized(packed, scales, zeros, bits, x.shape[1], group_size)
    if x.device != packed.device:
        raise ValueError(f"x on {x.device} but weights on {packed.device}")
    if resolve_backend(backend, x.device) == "torch":
        return wxa16_gemm_ref(x, packed, scales, zeros, bits, group_size)
    m, k = x.shape
    n = packed.shape[0]
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    bm, bn, bk = 16 if m <= 16 else 64, 64, 32
    grid = (triton.cdiv(m, bm), triton.cdiv(n, bn))
    _wxa16_kernel[grid](x.contiguous(), packed.contiguous(), scales.contiguous(), zeros.contiguous(), y, m, n, k,
                        packed.shape[1], scales.shape[1], group_size, BITS=bits,
                        OP=tl.float16 if x.dtype == torch.float16 else tl.bfloat16, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk)
    return y
