"""Fused MoE GEMM in which each expert has its own bit width.

(token, slot) pairs are sorted by expert and each expert's rows padded to BLOCK_M; experts are
grouped by bit width and each projection runs one launch per width present. gate/up is one launch
per width with SiLU(gate)·up fused in the epilogue; down is one launch per width with the routing
weight applied in the epilogue, then the k pairs of each token are summed (weighted combine).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from kernels.backend import resolve_backend
from kernels.dequant_gemm import _load_codes, dequantize_packed
from kernels.packing import pack, packed_words


@dataclass(frozen=True)
class BitGroup:
    bits: int
    experts: torch.Tensor  # [E_b] global expert ids
    packed: torch.Tensor  # [E_b, N, W] int32
    scales: torch.Tensor  # [E_b, N, G]
    zeros: torch.Tensor  # [E_b, N, G]


@dataclass(frozen=True)
class MixedBitExperts:
    """One projection (gate_up or down) of all experts of a layer, grouped by bit width."""

    num_experts: int
    out_features: int
    in_features: int
    group_size: int
    groups: tuple[BitGroup, ...]

    @staticmethod
    def from_codes(codes: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, bits: torch.Tensor,
                   group_size: int) -> "MixedBitExperts":
        """From per-expert uint8 codes [n, N, K], scales/zeros [n, N, G] and bits [n]."""
        n, out_f, in_f = codes.shape
        if scales.shape != (n, out_f, in_f // group_size) or zeros.shape != scales.shape:
            raise ValueError(f"scales/zeros must be [{n}, {out_f}, {in_f // group_size}]")
        groups = []
        for b in sorted({int(x) for x in bits.tolist()}):
            ids = torch.nonzero(bits == b).reshape(-1)
            packed = torch.stack([pack(codes[e].contiguous(), b) for e in ids.tolist()])
            groups.append(BitGroup(b, ids.to(codes.device), packed, scales[ids].contiguous(), zeros[ids].contiguous()))
        return MixedBitExperts(n, out_f, in_f, group_size, tuple(groups))

    def dequantize(self) -> torch.Tensor:
        """All experts' weights [n, N, K] in float32 (for the reference path)."""
        out = torch.empty(self.num_experts, self.out_features, self.in_features,
                          device=self.groups[0].packed.device)
        for g in self.groups:
            for j, e in enumerate(g.experts.tolist()):
                out[e] = dequantize_packed(g.packed[j], g.scales[j], g.zeros[j], g.bits, self.in_features,
                                           self.group_size)
        return out

    def to(self, device) -> "MixedBitExperts":
        groups = tuple(BitGroup(g.bits, g.experts.to(device), g.packed.to(device), g.scales.to(device),
                                g.zeros.to(device)) for g in self.groups)
        return MixedBitExperts(self.num_experts, self.out_features, self.in_features, self.group_size, groups)

    @property
    def device(self) -> torch.device:
        return self.groups[0].packed.device

    def nbytes(self) -> int:
        return sum(g.packed.numel() * 4 + g.scales.numel() * g.scales.element_size()
                   + g.zeros.numel() * g.zeros.element_size() for g in self.groups)


def fused_moe_ref(hidden: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor,
                  gate_up: MixedBitExperts, down: MixedBitExperts, act_quant=None) -> torch.Tensor:
    """Dequantize and loop over experts (experts without tokens are skipped)."""
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
def _moe_gemm_kernel(a_ptr, pairs_ptr, block_expert_ptr, packed_ptr, scale_ptr, zero_ptr, route_w_ptr, out_ptr,
                     K, N_OUT, W, G, group_size, row_div, n_pairs, half_n,
                     BITS: tl.constexpr, GATED: tl.constexpr, WEIGHTED: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    e = tl.load(block_expert_ptr + pid_m)
    rows = tl.load(pairs_ptr + pid_m * BLOCK_M + tl.arange(0, BLOCK_M))
    valid = rows < n_pairs
    a_rows = rows // row_div
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_cols = half_n if GATED else N_OUT
    nmask = rn < n_cols
    w_base = packed_ptr + e * (N_OUT * W)
    s_base = scale_ptr + e * (N_OUT * G)
    z_base = zero_ptr + e * (N_OUT * G)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    acc_up = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        kmask = rk < K
        a = tl.load(a_ptr + a_rows[:, None] * K + rk[None, :], mask=valid[:, None] & kmask[None, :], other=0.0)
        a = a.to(tl.float32)
        wmask = kmask[:, None] & nmask[None, :]
        g = rk[:, None] // group_size
        codes = _load_codes(w_base, rn[None, :], rk[:, None], W, wmask, BITS)
        s = tl.load(s_base + rn[None, :] * G + g, mask=wmask, other=0.0).to(tl.float32)
        z = tl.load(z_base + rn[None, :] * G + g, mask=wmask, other=0.0).to(tl.float32)
        acc += tl.dot(a, (codes - z) * s)
        if GATED:  # the matching "up" rows live half_n rows further down
            up_n = rn + half_n
            codes_u = _load_codes(w_base, up_n[None, :], rk[:, None], W, wmask, BITS)
            s_u = tl.load(s_base + up_n[None, :] * G + g, mask=wmask, other=0.0).to(tl.float32)
            z_u = tl.load(z_base + up_n[None, :] * G + g, mask=wmask, other=0.0).to(tl.float32)
            acc_up += tl.dot(a, (codes_u - z_u) * s_u)
    if GATED:
        acc = acc / (1.0 + tl.exp(-acc)) * acc_up
    if WEIGHTED:
        rw = tl.load(route_w_ptr + rows, mask=valid, other=0.0).to(tl.float32)
        acc = acc * rw[:, None]
    tl.store(out_ptr + rows[:, None] * n_cols + rn[None, :], acc, mask=valid[:, None] & nmask[None, :])


def _sorted_blocks(flat_expert: torch.Tensor, group: BitGroup, num_experts: int, block_m: int):
    """Pair ids sorted by (local) expert, each expert padded to block_m; expert id per block."""
    local = torch.full((num_experts,), -1, dtype=torch.long, device=flat_expert.device)
    local[group.experts] = torch.arange(len(group.experts), device=flat_expert.device)
    pair_local = local[flat_expert]
    pairs, blocks = [], []
    n_pairs = flat_expert.numel()
    for j in range(len(group.experts)):
        ids = torch.nonzero(pair_local == j).reshape(-1)
        if ids.numel() == 0:
            continue
        pad = (-ids.numel()) % block_m
        pairs.append(torch.cat([ids, torch.full((pad,), n_pairs, dtype=torch.long, device=ids.device)]))
        blocks += [j] * ((ids.numel() + pad) // block_m)
    if not pairs:
        return None, None
    return (torch.cat(pairs).to(torch.int32),
            torch.tensor(blocks, dtype=torch.int32, device=flat_expert.device))


def _launch(a: torch.Tensor, flat_expert: torch.Tensor, experts: MixedBitExperts, out: torch.Tensor, row_div: int,
            gated: bool, route_w: torch.Tensor | None, block_m: int = 16) -> None:
    n_pairs = flat_expert.numel()
    half_n = experts.out_features // 2
    n_cols = half_n if gated else experts.out_features
    for group in experts.groups:  # one launch per bit width present
        pairs, blocks = _sorted_blocks(flat_expert, group, experts.num_experts, block_m)
        if pairs is None:
            continue
        bn = 32
        grid = (blocks.numel(), triton.cdiv(n_cols, bn))
        _moe_gemm_kernel[grid](a, pairs, blocks, group.packed, group.scales, group.zeros,
                               route_w if route_w is not None else a, out, experts.in_features,
                               experts.out_features, group.packed.shape[-1], group.scales.shape[-1],
                               experts.group_size, row_div, n_pairs, half_n, BITS=group.bits, GATED=gated,
                               WEIGHTED=route_w is not None, BLOCK_M=block_m, BLOCK_N=bn, BLOCK_K=32)


def _check(hidden, top_k_index, top_k_weights, gate_up: MixedBitExperts, down: MixedBitExperts) -> None:
    t, d = hidden.shape
    if top_k_index.shape != top_k_weights.shape or top_k_index.shape[0] != t:
        raise ValueError(f"top_k_index {tuple(top_k_index.shape)} / weights {tuple(top_k_weights.shape)} "
                         f"do not match {t} tokens")
    if gate_up.in_features != d or down.out_features != d or gate_up.out_features != 2 * down.in_features:
        raise ValueError("gate_up must be [n, 2I, d] and down [n, d, I] for hidden size d")
    if gate_up.num_experts != down.num_experts:
        raise ValueError("gate_up and down have different numbers of experts")
    for g in (*gate_up.groups, *down.groups):
        if g.packed.device != hidden.device:
            raise ValueError(f"weights on {g.packed.device}, hidden states on {hidden.device}")


def fused_moe(hidden: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor,
              gate_up: MixedBitExperts, down: MixedBitExperts, backend: str = "auto", act_quant=None) -> torch.Tensor:
    """Σ_j w[t, j] · down_e(SiLU(gate_e(x_t)) · up_e(x_t)) with e = top_k_index[t, j], mixed bit widths."""
    _check(hidden, top_k_index, top_k_weights, gate_up, down)
    if resolve_backend(backend, hidden.device) == "torch":
        return fused_moe_ref(hidden, top_k_index, top_k_weights, gate_up, down, act_quant)
    t, k = top_k_index.shape
    flat = top_k_index.reshape(-1).long()
    x = hidden.contiguous()
    inter = torch.zeros(t * k, down.in_features, dtype=torch.float32, device=hidden.device)
    _launch(x, flat, gate_up, inter, row_div=k, gated=True, route_w=None)
    if act_quant is not None:
        inter = act_quant(inter)
    out_pairs = torch.zeros(t * k, down.out_features, dtype=torch.float32, device=hidden.device)
    _launch(inter, flat, down, out_pairs, row_div=1, gated=False,
            route_w=top_k_weights.reshape(-1).float().contiguous())
    out = torch.zeros(t, down.out_features, dtype=torch.float32, device=hidden.device)
    out.index_add_(0, torch.arange(t, device=hidden.device).repeat_interleave(k), out_pairs)
    return out.to(hidden.dtype)


def weight_bytes_touched(experts: MixedBitExperts, active: torch.Tensor) -> int:
    """Bytes of packed weights + scales/zeros of the experts in `active` (bandwidth-bound estimate)."""
    total = 0
    act = set(active.tolist())
    for g in experts.groups:
        per = (packed_words(experts.in_features, g.bits) * 4 * experts.out_features
               + 2 * g.scales[0].numel() * g.scales.element_size())
        total += per * sum(1 for e in g.experts.tolist() if e in act)
    return total
