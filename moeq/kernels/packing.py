"""Pack / unpack b-bit integer codes (b ∈ {2, 3, 4, 8}) into int32 words along the input dimension.

Layout: codes [N, K] (uint8, values < 2^b) → packed [N, W] int32 with W = K_pad·b/32, where
K_pad = K rounded up to a multiple of 32 (padding codes are 0). Code k of a row occupies bits
[k·b, k·b + b) of the row's little-endian bit stream; for b = 3 a code may straddle two words
(32 codes fill exactly 3 words), so no bit is wasted beyond the padding to 32 codes.
Scales/zeros are not packed: [N, n_groups] in the caller's float dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from moeq.kernels.backend import resolve_backend

SUPPORTED_BITS = (2, 3, 4, 8)
PACK_MULTIPLE = 32


def _check_bits(bits: int) -> None:
    if bits not in SUPPORTED_BITS:
        raise ValueError(f"packing supports bits {SUPPORTED_BITS}, got {bits}")


def padded_k(k: int) -> int:
    return -(-k // PACK_MULTIPLE) * PACK_MULTIPLE


def packed_words(k: int, bits: int) -> int:
    """int32 words per row for K codes of `bits` bits."""
    _check_bits(bits)
    return padded_k(k) * bits // 32


def packed_bytes(n: int, k: int, bits: int) -> int:
    return 4 * n * packed_words(k, bits)


def pack_ref(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pure-torch packing (int64 bit arithmetic) → int32 [N, W]."""
    _check_bits(bits)
    n, k = codes.shape
    kp = padded_k(k)
    c = torch.zeros(n, kp, dtype=torch.int64, device=codes.device)
    c[:, :k] = codes.to(torch.int64)
    pos = torch.arange(kp, device=codes.device) * bits
    word, shift = pos // 32, pos % 32
    words = torch.zeros(n, kp * bits // 32, dtype=torch.int64, device=codes.device)
    words.scatter_add_(1, word.expand(n, -1), (c << shift) & 0xFFFFFFFF)
    spill = shift + bits > 32  # 3-bit codes crossing a word boundary
    if bool(spill.any()):
        hi = (c[:, spill] >> (32 - shift[spill])) & 0xFFFFFFFF
        words.scatter_add_(1, (word[spill] + 1).expand(n, -1), hi)
    words = words & 0xFFFFFFFF
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def unpack_ref(packed: torch.Tensor, bits: int, k: int) -> torch.Tensor:
    """Inverse of pack_ref: uint8 codes [N, K]."""
    _check_bits(bits)
    n = packed.shape[0]
    w = packed.to(torch.int64) & 0xFFFFFFFF
    pos = torch.arange(k, device=packed.device) * bits
    word, shift = pos // 32, pos % 32
    lo = w[:, word] >> shift
    nxt = torch.clamp(word + 1, max=w.shape[1] - 1)
    hi = torch.where(shift + bits > 32, w[:, nxt] << (32 - shift), torch.zeros_like(lo))
    return ((lo | hi) & ((1 << bits) - 1)).to(torch.uint8).reshape(n, k)


@triton.jit
def _unpack_kernel(packed_ptr, out_ptr, K, W, BITS: tl.constexpr, BLOCK_K: tl.constexpr):
    row = tl.program_id(0)
    kb = tl.program_id(1)
    k = kb * BLOCK_K + tl.arange(0, BLOCK_K)
    mask = k < K
    pos = k * BITS
    word = pos // 32
    shift = (pos % 32).to(tl.uint32)
    lo = tl.load(packed_ptr + row * W + word, mask=mask, other=0).to(tl.uint32, bitcast=True)
    nxt = tl.minimum(word + 1, W - 1)
    hi = tl.load(packed_ptr + row * W + nxt, mask=mask, other=0).to(tl.uint32, bitcast=True)
    spill = (shift + BITS) > 32
    hi_part = tl.where(spill, hi << (32 - shift), 0)
    val = ((lo >> shift) | hi_part) & ((1 << BITS) - 1)
    tl.store(out_ptr + row * K + k, val.to(tl.uint8), mask=mask)


def unpack(packed: torch.Tensor, bits: int, k: int, backend: str = "auto") -> torch.Tensor:
    """Codes [N, K] from packed [N, W] (Triton kernel on CUDA / interpreter, torch otherwise)."""
    _check_bits(bits)
    if packed.dtype != torch.int32 or packed.dim() != 2:
        raise ValueError(f"packed must be a 2-D int32 tensor, got {packed.dtype} {tuple(packed.shape)}")
    if packed.shape[1] != packed_words(k, bits):
        raise ValueError(f"packed has {packed.shape[1]} words per row; {k} codes of {bits} bits need "
                         f"{packed_words(k, bits)}")
    if resolve_backend(backend, packed.device) == "torch":
        return unpack_ref(packed, bits, k)
    n, w = packed.shape
    out = torch.empty(n, k, dtype=torch.uint8, device=packed.device)
    block = 128
    _unpack_kernel[(n, triton.cdiv(k, block))](packed.contiguous(), out, k, w, BITS=bits, BLOCK_K=block)
    return out


@triton.jit
def _pack_kernel(codes_ptr, out_ptr, K, W, BITS: tl.constexpr, BLOCK_W: tl.constexpr, CODES_PER_WORD: tl.constexpr):
    row = tl.program_id(0)
    wb = tl.program_id(1)
    w = wb * BLOCK_W + tl.arange(0, BLOCK_W)
    wmask = w < W
    base = w * 32
    k0 = base // BITS
    acc = tl.zeros([BLOCK_W], dtype=tl.uint32)
    for j in tl.static_range(CODES_PER_WORD):
        k = k0 + j
        kmask = wmask & (k < K)
        code = tl.load(codes_ptr + row * K + k, mask=kmask, other=0).to(tl.uint32)
        off = k * BITS - base  # may be negative for a code straddling in from the previous word
        left = tl.where(off >= 0, code << tl.maximum(off, 0).to(tl.uint32), code >> tl.maximum(-off, 0).to(tl.uint32))
        acc = acc | tl.where(kmask & (off < 32), left, 0)
    tl.store(out_ptr + row * W + w, acc.to(tl.int32, bitcast=True), mask=wmask)


def pack(codes: torch.Tensor, bits: int, backend: str = "auto") -> torch.Tensor:
    """Packed int32 [N, W] from uint8 codes [N, K]."""
    _check_bits(bits)
    if codes.dim() != 2 or codes.dtype != torch.uint8:
        raise ValueError(f"codes must be a 2-D uint8 tensor [N, K], got {codes.dtype} {tuple(codes.shape)}")
    if codes.numel() and int(codes.max()) >= 2 ** bits:
        raise ValueError(f"codes exceed the {bits}-bit range")
    if resolve_backend(backend, codes.device) == "torch":
        return pack_ref(codes, bits)
    n, k = codes.shape
    w = packed_words(k, bits)
    padded = torch.zeros(n, padded_k(k), dtype=torch.uint8, device=codes.device)
    padded[:, :k] = codes
    out = torch.empty(n, w, dtype=torch.int32, device=codes.device)
    block = 64
    _pack_kernel[(n, triton.cdiv(w, block))](padded, out, padded.shape[1], w, BITS=bits, BLOCK_W=block,
                                             CODES_PER_WORD=32 // bits + 2)
    return out
