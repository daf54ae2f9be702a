"""The fused mixed-bit MoE kernel under the Triton interpreter with the GPU's operand rounding emulated
(conftest): packed layout, device-side routing, error-model bounds for every width, split-K and tile configs,
bitwise-repeatable combine, general (code, scale, zero) grids, and the TF32 failure the emulation exists to catch."""

from __future__ import annotations

import pytest
import torch

from moeq.kernels.configs import CONFIGS, MoeConfig
from moeq.kernels.moe_gemm import fused_moe, fused_moe_ref
from moeq.kernels.moe_layout import MixedBitExperts, expert_words, k_step, pack_planes, unpack_planes
from moeq.kernels.routing import align_routing, max_blocks
from moeq.quant_core.functional.affine import compute_params, quantize
from tests.kernels.tf32_probe import fp32_operand_gemm
from tests.kernels.error_model import UNIT_ROUNDOFF, U32, assert_within, gemm_bound, moe_bound


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("n, k", [(5, 70), (64, 32), (3, 128)])
def test_plane_packing_round_trips_at_exact_size(bits, n, k):
    codes = torch.randint(0, 2 ** bits, (n, k), dtype=torch.uint8, generator=torch.Generator().manual_seed(n + k))
    words = pack_planes(codes, bits)
    step = k_step(bits)  # K padded to one tile of the narrowest plane: 64 at 8 bits … 512 at 3
    assert step == {2: 256, 3: 512, 4: 128, 8: 64}[bits]
    assert words.dtype == torch.int32 and words.numel() == expert_words(n, k, bits) == n * (-(-k // step) * step) * bits // 32
    assert torch.equal(unpack_planes(words, bits, n, k), codes)


def test_layout_runs_along_n_and_one_slot_of_16_rows_is_16_consecutive_k():
    codes = torch.zeros(8, 128, dtype=torch.uint8)
    codes[:, 17] = torch.arange(8, dtype=torch.uint8)  # code k=17 of column n is n
    words = pack_planes(codes, 4).reshape(16, 8)  # 4-bit: one tile of 16 word rows × 8 columns holds k = 0..127
    assert words[1].tolist() == [n << 4 for n in range(8)]  # k = 17 → slot 1 (bits 4..7) of row 1
    assert int(words.count_nonzero()) == 7


def test_routing_alignment_is_fixed_shape_sorted_and_padded():
    idx = torch.tensor([[3, 1], [1, 0], [3, 1], [2, 3]])
    r = align_routing(idx, 6, 4)
    assert r.n_blocks == max_blocks(8, 6, 4)  # depends only on (pairs, experts, block_m): no host sync
    pairs, experts = r.sorted_pairs.view(-1, 4), r.block_expert
    flat = idx.reshape(-1)
    for b, e in enumerate(experts.tolist()):
        real = [p for p in pairs[b].tolist() if p < 8]
        assert all(int(flat[p]) == e for p in real)
        if e < 0:
            assert not real
    seen = sorted(p for p in r.sorted_pairs.tolist() if p < 8)
    assert seen == list(range(8))  # every pair exactly once
    assert experts.tolist()[:4] == [0, 1, 2, 3] and set(experts.tolist()[4:]) == {-1}


def _experts(n, out_f, in_f, bits, group, seed, symmetric=False):
    w = torch.randn(n, out_f, in_f, generator=torch.Generator().manual_seed(seed)) * 0.1
    p = compute_params(w, torch.tensor(bits), group, symmetric)
    return MixedBitExperts.from_codes(quantize(w, p), p.scale, p.zero, bits, p.group_size)


def _routing(tokens, n, top_k, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(tokens, n, generator=g)
    logits[:, 0] = -1e9  # expert 0 never receives a token
    w, idx = logits.softmax(-1).topk(top_k, dim=-1)
    return w, idx


CASES = [  # tokens, d, inter, bits, top_k, group, config (None: the shape-class default)
    (7, 64, 32, [4, 4, 4, 4], 2, 32, None),
    (13, 32, 64, [2, 3, 4, 8, 4, 2], 3, 32, None),  # mixed widths, top-3
    (5, 64, 64, [3] * 8, 1, 64, None),  # top-1
    (1, 128, 64, [2, 4, 4, 2], 2, 64, MoeConfig(16, 32, 4, 4, 1)),  # decode, split-K 4
    (3, 64, 96, [8, 2, 3, 4, 8], 4, 32, MoeConfig(16, 32, 2, 4, 1)),  # split-K 2, top-4
    (20, 96, 32, [4, 3, 2, 8], 2, None, MoeConfig(32, 32, 1, 4, 1)),  # per-channel groups, prefill tile
    (2, 512, 96, [3, 4, 2, 8], 2, None, CONFIGS["decode"][0]),  # the decode default, split-K
    (4, 256, 128, [8, 4, 8, 2], 2, 128, None),  # a group spans several K steps (8-bit: 64 per step)
]


@pytest.mark.parametrize("tokens, d, inter, bits, top_k, group, cfg", CASES)
def test_fused_mixed_bit_moe_is_within_its_error_model(tokens, d, inter, bits, top_k, group, cfg):
    n = len(bits)
    gate_up, down = _experts(n, 2 * inter, d, bits, group, 0), _experts(n, d, inter, bits, group, 1)
    assert gate_up.widths == tuple(sorted(set(bits)))
    w, idx = _routing(tokens, n, top_k, tokens)
    x = torch.randn(tokens, d, generator=torch.Generator().manual_seed(2))
    out = fused_moe(x, idx, w, gate_up, down, backend="triton", config=cfg)
    ref, bound = moe_bound(x, idx, w, gate_up, down, UNIT_ROUNDOFF[torch.bfloat16])
    assert_within(out, ref, bound, "fp32 in, bf16 operands")
    torch.testing.assert_close(fused_moe_ref(x, idx, w, gate_up, down).double(), ref, rtol=1e-4, atol=1e-5)
    xb = x.to(torch.bfloat16)  # a bf16 model: operands exact, output rounded to bf16
    ref_b, bound_b = moe_bound(xb.float(), idx, w, gate_up, down, UNIT_ROUNDOFF[torch.bfloat16], torch.bfloat16)
    assert_within(fused_moe(xb, idx, w, gate_up, down, backend="triton", config=cfg), ref_b, bound_b, "bf16")


def test_fp16_activations_use_fp16_operands_and_the_tighter_bound():
    gate_up, down = _experts(4, 64, 64, [4, 2, 8, 3], 32, 0), _experts(4, 64, 32, [4, 2, 8, 3], 32, 1)
    w, idx = _routing(6, 4, 2, 0)
    x = torch.randn(6, 64, generator=torch.Generator().manual_seed(3)).half()
    ref, bound = moe_bound(x.float(), idx, w, gate_up, down, UNIT_ROUNDOFF[torch.float16], torch.float16)
    assert_within(fused_moe(x, idx, w, gate_up, down, backend="triton"), ref, bound, "fp16")


def test_grid_using_all_codes_with_a_zero_point_is_packed_generally():
    """The symmetric grid that uses all 2^b codes (scale 2·max|w|/(2^b−1), codes −2^(b−1)…2^(b−1)−1) stored
    unsigned with zero 2^(b−1): the kernel takes any (code, scale, zero)."""
    n, out_f, in_f, group = 3, 64, 64, 32
    bits = [2, 3, 4]
    w = torch.randn(n, out_f, in_f, generator=torch.Generator().manual_seed(5)) * 0.1
    codes, scales, zeros = [], [], []
    for e, b in enumerate(bits):
        wg = w[e].reshape(out_f, in_f // group, group)
        s = 2 * wg.abs().amax(-1) / (2 ** b - 1)
        z = torch.full_like(s, 2 ** (b - 1))
        q = torch.clamp(torch.round(wg / s[..., None] - 0.5) + z[..., None], 0, 2 ** b - 1)
        codes.append(q.reshape(out_f, in_f).to(torch.uint8))
        scales.append(s)
        zeros.append(z)
    assert max(int(c.max()) for c in codes) == 2 ** max(bits) - 1  # the top code is used
    gu = MixedBitExperts.from_codes(torch.stack(codes), torch.stack(scales), torch.stack(zeros), bits, group)
    dn = _experts(n, in_f, out_f // 2, bits, group, 6, symmetric=True)
    wts, idx = _routing(4, n, 2, 1)
    idx = torch.where(idx == 0, torch.ones_like(idx), idx)
    x = torch.randn(4, in_f, generator=torch.Generator().manual_seed(7))
    ref, bound = moe_bound(x, idx, wts, gu, dn, UNIT_ROUNDOFF[torch.bfloat16])
    assert_within(fused_moe(x, idx, wts, gu, dn, backend="triton"), ref, bound, "all-codes grid")


def test_top_k_above_two_is_bitwise_repeatable():
    gate_up, down = _experts(6, 64, 32, [2, 3, 4, 8, 4, 2], 32, 0), _experts(6, 32, 32, [2, 3, 4, 8, 4, 2], 32, 1)
    w, idx = _routing(9, 6, 4, 3)
    x = torch.randn(9, 32, generator=torch.Generator().manual_seed(4))
    cfg = MoeConfig(16, 32, 1, 4, 1)
    first = fused_moe(x, idx, w, gate_up, down, backend="triton", config=cfg)
    assert torch.equal(first, fused_moe(x, idx, w, gate_up, down, backend="triton", config=cfg))


def test_fused_kernel_refuses_group_sizes_the_layout_cannot_tile():
    gate_up, down = _experts(2, 64, 96, [4, 4], 48, 0), _experts(2, 96, 32, [4, 4], 32, 1)
    w, idx = _routing(2, 2, 1, 0)
    with pytest.raises(ValueError, match="power-of-two group size"):
        fused_moe(torch.randn(2, 96), idx, w, gate_up, down, backend="triton")


def _fp32_gemm(ieee: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(16, 64, generator=g), torch.randn(64, 32, generator=g)
    y = torch.empty(16, 32)
    fp32_operand_gemm[(1,)](x, w, y, IEEE=ieee, M=16, N=32, K=64)
    return y, x.double() @ w.double(), gemm_bound(x, w.T, w.T.abs(), U32)


def test_tf32_operands_violate_the_fp32_error_model_under_the_emulation():
    """With TF32 in force (fp32 operands, default precision) the emulation truncates them like the MMA does and the
    fp32 error model fails, as it would on the GPU; the same kernel with "ieee" operands passes."""
    y, ref, bound = _fp32_gemm(ieee=False)
    with pytest.raises(AssertionError, match="exceeds bound"):
        assert_within(y, ref, bound, "tf32")
    y, ref, bound = _fp32_gemm(ieee=True)
    assert_within(y, ref, bound, "ieee")


def test_without_the_emulation_the_interpreter_would_hide_tf32(monkeypatch):
    from triton.runtime import interpreter

    from tests.kernels import hw_numerics

    monkeypatch.setattr(interpreter.InterpreterBuilder, "create_dot", hw_numerics._ORIGINAL)
    y, ref, bound = _fp32_gemm(ieee=False)
    assert_within(y, ref, bound, "plain interpreter")  # passes: the interpreter alone would miss the bug
