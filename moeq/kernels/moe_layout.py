"""Packed layout of one projection (gate_up or down) of all experts of a layer, every expert at its own width.

Codes are unsigned integers q ∈ [0, 2^b) with a zero point: w = (q − z)·s, s and z per (group of K, column n).
That covers any integer grid (the asymmetric grid, the symmetric grid with z = 2^(b−1), and grids that use all
2^b codes), so nothing here assumes a particular grid.

Layout (decode-first, one flat buffer per projection):
- A b-bit code is split into power-of-two *planes*: 2 → (2,), 3 → (2, 1), 4 → (4,), 8 → (8,); plane bits are
  code bits [lo, lo + pb). A plane of width pb packs cpw = 32/pb codes of one column n into an int32 word.
- Words are stored [K_pad/cpw, N] row-major: consecutive memory runs along N, so a warp's lanes read consecutive
  columns (coalesced) and a thread's 4 columns are one 128-bit load. No word straddles (3-bit needs no
  cross-word shifts).
- Within a plane, K is cut into tiles of 16·cpw codes held by 16 word rows; slot j (bits [j·pb, (j+1)·pb)) of
  row i of tile T holds k = T·16·cpw + 16·j + i. So one shift-and-mask of a [16, N] block of words yields the
  codes of 16 *consecutive* k: exactly one k16 step of the tensor-core MMA, with no reshuffle of codes.
  K is padded with code 0 to a multiple of the widest tile of the expert's planes (`k_step`: 64 at 8 bits,
  128 at 4, 256 at 2, 512 at 3).
- All experts' planes live in one int32 buffer `qweight`; `offsets[e]` is expert e's first word (a multiple of
  16 words, so 128-bit loads stay aligned), `bits[e]` its width (the kernel's per-block width table).
- Scales and zeros are float32 [E, G, N] (G = K / group_size): one contiguous row of N per group.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SUPPORTED_BITS = (2, 3, 4, 8)
PLANES = {2: (2,), 3: (2, 1), 4: (4,), 8: (8,)}
EXPERT_ALIGN_WORDS = 16  # every expert starts on a 64-byte boundary (aligned 128-bit loads)
MMA_K = 16


def k_step(bits: int) -> int:
    """K codes per tile of the expert's narrowest plane: the padding unit and the kernel's K step."""
    return MMA_K * 32 // min(PLANES[bits])


def padded_k(k: int, bits: int) -> int:
    return -(-k // k_step(bits)) * k_step(bits)


def expert_words(out_features: int, in_features: int, bits: int) -> int:
    """int32 words of one expert at `bits`: N·K_pad·b/32."""
    return out_features * padded_k(in_features, bits) * bits // 32


def pack_planes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """uint8 codes [N, K] → int32 words (flat: the planes of `bits` one after the other, each [K_pad/cpw, N])."""
    if bits not in SUPPORTED_BITS:
        raise ValueError(f"packed kernels support bits {SUPPORTED_BITS}, got {bits}")
    n, k = codes.shape
    kp = padded_k(k, bits)
    c = torch.zeros(n, kp, dtype=torch.int64, device=codes.device)
    c[:, :k] = codes.to(torch.int64)
    out, lo = [], 0
    for pb in PLANES[bits]:
        cpw = 32 // pb
        plane = ((c >> lo) & ((1 << pb) - 1)).reshape(n, kp // (MMA_K * cpw), cpw, MMA_K)  # [n, T, j, i]
        shifts = (torch.arange(cpw, device=codes.device, dtype=torch.int64) * pb)[:, None]
        words = (plane << shifts).sum(2)  # [n, T, i]; disjoint bit fields: the sum is an OR
        words = torch.where(words >= 2 ** 31, words - 2 ** 32, words).to(torch.int32)
        out.append(words.reshape(n, -1).T.contiguous().reshape(-1))  # rows T·16 + i, columns n
        lo += pb
    return torch.cat(out)


def unpack_planes(words: torch.Tensor, bits: int, n: int, k: int) -> torch.Tensor:
    """Inverse of pack_planes: uint8 codes [N, K]."""
    kp = padded_k(k, bits)
    codes = torch.zeros(n, kp, dtype=torch.int64, device=words.device)
    start, lo = 0, 0
    for pb in PLANES[bits]:
        cpw = 32 // pb
        size = kp // cpw * n
        w = (words[start:start + size].to(torch.int64) & 0xFFFFFFFF).reshape(kp // cpw, n).T  # [n, T·16 + i]
        w = w.reshape(n, kp // (MMA_K * cpw), 1, MMA_K)
        shifts = (torch.arange(cpw, device=words.device, dtype=torch.int64) * pb)[:, None]
        plane = (w >> shifts) & ((1 << pb) - 1)  # [n, T, j, i]
        codes |= plane.reshape(n, kp) << lo
        start += size
        lo += pb
    return codes[:, :k].to(torch.uint8)


@dataclass(frozen=True)
class MixedBitExperts:
    """One projection of all experts of a layer in the packed layout above."""

    num_experts: int
    out_features: int
    in_features: int
    group_size: int
    qweight: torch.Tensor  # int32 [Σ_e words_e]
    offsets: torch.Tensor  # int64 [E]: first word of expert e
    bits: torch.Tensor  # int32 [E]
    scales: torch.Tensor  # float32 [E, G, N]
    zeros: torch.Tensor  # float32 [E, G, N]
    widths: tuple[int, ...]  # the distinct widths present (host-side, so launches never read the device)

    @staticmethod
    def from_codes(codes: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, bits: torch.Tensor | list,
                   group_size: int) -> "MixedBitExperts":
        """From per-expert uint8 codes [E, N, K], scales/zeros [E, N, G] and bits [E]."""
        n, out_f, in_f = codes.shape
        if in_f % group_size:
            raise ValueError(f"group size {group_size} does not divide in_features {in_f}")
        if scales.shape != (n, out_f, in_f // group_size) or zeros.shape != scales.shape:
            raise ValueError(f"scales/zeros must be [{n}, {out_f}, {in_f // group_size}], got "
                             f"{tuple(scales.shape)}/{tuple(zeros.shape)}")
        bits_l = [int(b) for b in torch.as_tensor(bits).reshape(-1).tolist()]
        if len(bits_l) != n:
            raise ValueError(f"bits has {len(bits_l)} entries for {n} experts")
        words, offsets, off = [], [], 0
        for e, b in enumerate(bits_l):
            if codes[e].numel() and int(codes[e].max()) >= 2 ** b:
                raise ValueError(f"expert {e}: codes exceed the {b}-bit range")
            packed = pack_planes(codes[e], b)
            pad = -packed.numel() % EXPERT_ALIGN_WORDS
            words += [packed, torch.zeros(pad, dtype=torch.int32, device=codes.device)]
            offsets.append(off)
            off += packed.numel() + pad
        dev = codes.device
        return MixedBitExperts(n, out_f, in_f, group_size, torch.cat(words),
                               torch.tensor(offsets, dtype=torch.int64, device=dev),
                               torch.tensor(bits_l, dtype=torch.int32, device=dev),
                               scales.float().transpose(1, 2).contiguous(), zeros.float().transpose(1, 2).contiguous(),
                               tuple(sorted(set(bits_l))))

    def expert_codes(self, e: int) -> torch.Tensor:
        b = int(self.bits[e])
        start = int(self.offsets[e])
        size = expert_words(self.out_features, self.in_features, b)
        return unpack_planes(self.qweight[start:start + size], b, self.out_features, self.in_features)

    def dequantize(self) -> torch.Tensor:
        """All experts' weights [E, N, K] in float32 (the reference path)."""
        idx = torch.arange(self.in_features, device=self.device) // self.group_size
        out = torch.empty(self.num_experts, self.out_features, self.in_features, device=self.device)
        for e in range(self.num_experts):
            s, z = self.scales[e].T[:, idx], self.zeros[e].T[:, idx]
            out[e] = (self.expert_codes(e).float() - z) * s
        return out

    def to(self, device) -> "MixedBitExperts":
        return MixedBitExperts(self.num_experts, self.out_features, self.in_features, self.group_size,
                               *(t.to(device) for t in (self.qweight, self.offsets, self.bits, self.scales,
                                                        self.zeros)), self.widths)

    @property
    def device(self) -> torch.device:
        return self.qweight.device

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.qweight, self.scales, self.zeros))

    def expert_bytes(self, e: int) -> int:
        """Bytes the kernel streams for expert e: its packed words plus its scales and zeros."""
        b = int(self.bits[e])
        return 4 * expert_words(self.out_features, self.in_features, b) + 2 * self.scales[e].numel() * 4
