"""Packing, activation quantization and the dense W·A16 kernel against their pure-torch references, under the
Triton interpreter on CPU with the GPU's operand rounding emulated (conftest). The fused MoE kernel: test_moe_kernel."""

from __future__ import annotations

import pytest
import torch

from moeq.kernels.act_quant import act_quant, act_quant_ref
from moeq.kernels.dequant_gemm import dequantize_packed, wxa16_gemm, wxa16_gemm_ref
from moeq.kernels.packing import pack, pack_ref, packed_bytes, packed_words, unpack, unpack_ref
from moeq.quant_core.functional.affine import compute_params, quantize
from tests.kernels.error_model import UNIT_ROUNDOFF, assert_within, gemm_bound

BITS = (2, 3, 4, 8)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("n, k", [(3, 64), (5, 37), (2, 100), (1, 32)])
def test_pack_unpack_round_trip_and_kernel_matches_reference(bits, n, k):
    codes = torch.randint(0, 2 ** bits, (n, k), dtype=torch.uint8, generator=torch.Generator().manual_seed(k))
    ref = pack_ref(codes, bits)
    assert ref.dtype == torch.int32 and ref.shape == (n, packed_words(k, bits))
    assert torch.equal(pack(codes, bits, backend="triton"), ref)
    assert torch.equal(unpack(ref, bits, k, backend="triton"), codes)
    assert torch.equal(unpack_ref(ref, bits, k), codes)


@pytest.mark.parametrize("bits, words_per_32", [(2, 2), (3, 3), (4, 4), (8, 8)])
def test_packed_sizes_are_exact(bits, words_per_32):
    assert packed_words(32, bits) == words_per_32
    assert packed_words(4096, bits) == 4096 * bits // 32  # no waste when K is a multiple of 32
    assert packed_bytes(14336, 4096, bits) == 14336 * 4096 * bits // 8
    assert packed_words(33, bits) == 2 * words_per_32  # K padded to the next multiple of 32


def test_packing_rejects_out_of_range_codes():
    with pytest.raises(ValueError, match="exceed the 3-bit range"):
        pack(torch.full((1, 8), 9, dtype=torch.uint8), 3)


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("shape", [(5, 37), (2, 3, 64), (1, 8)])
def test_act_quant_kernel_matches_reference(bits, symmetric, shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1)) * 3
    # float32: kernel and reference are bit-identical
    assert torch.equal(act_quant(x, bits, 0.9, symmetric, backend="triton"), act_quant_ref(x, bits, 0.9, symmetric))
    xb = x.to(torch.bfloat16)
    out = act_quant(xb, bits, 0.9, symmetric, backend="triton")
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), act_quant_ref(xb, bits, 0.9, symmetric).float(), rtol=1e-2, atol=1e-2)


def test_act_quant_levels_and_clip():
    x = torch.linspace(-1, 1, 64)[None]
    q4 = act_quant_ref(x, 4, 1.0)
    assert len(torch.unique(q4)) <= 16 and len(torch.unique(act_quant_ref(x, 8, 1.0))) > 16


# Hand-worked grids (docs/methods.md, "Activation quantization grid"). Symmetric, as the authors' QuaRot-based
# MoEQuant code: scale = c·max|x| / (2^(b−1) − 1), signed codes clamped to −2^(b−1) … 2^(b−1) − 1, so the extra
# negative code is reached only by values beyond the clipped range. Asymmetric, as DuQuant/EAQuant:
# scale = c·(max − min) / (2^b − 1), zero = round(−c·min / scale), codes 0 … 2^b − 1.
# Every input is chosen so that the scale is exactly 1 and the dequantized value equals the signed code.
ACT_GRID_ORACLES = [
    # (bits, clip, symmetric, x, expected dequantized values)
    (4, 1.0, True, [7.0, -7.0, 3.49, -3.5, 0.5, 2.5], [7.0, -7.0, 3.0, -4.0, 0.0, 2.0]),   # half to even
    (4, 0.875, True, [8.0, -8.0, 7.4, -7.6, 2.5, -0.5], [7.0, -8.0, 7.0, -8.0, 2.0, -0.0]),  # c·8/7 = 1: −8 reached, +8 clamped
    (2, 0.5, True, [2.0, -2.0, -1.2, 0.4, 0.6, -0.6], [1.0, -2.0, -1.0, 0.0, 1.0, -1.0]),   # codes −2 … 1
    (4, 1.0, False, [-3.0, 12.0, 0.5, 1.5, -2.5, 11.6], [-3.0, 12.0, 0.0, 2.0, -2.0, 12.0]),  # zero 3, codes 0 … 15
    (2, 1.0, False, [-1.0, 2.0, 0.5, -0.4, 1.5, 1.4], [-1.0, 2.0, 0.0, 0.0, 2.0, 1.0]),    # zero 1, codes 0 … 3
]


@pytest.mark.parametrize("bits, clip, symmetric, x, expected", ACT_GRID_ORACLES)
def test_act_quant_grid_matches_hand_worked_values(bits, clip, symmetric, x, expected):
    x = torch.tensor([x])
    want = torch.tensor([expected])
    assert torch.equal(act_quant_ref(x, bits, clip, symmetric), want)
    assert torch.equal(act_quant(x, bits, clip, symmetric, backend="triton"), want)


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_symmetric_act_quant_uses_all_2b_codes_with_clipping_and_one_fewer_without(bits):
    half = 2 ** (bits - 1) - 1
    # codes −2^(b−1) … 2^(b−1) − 1 of a row whose clipped max gives scale 1: every code used once
    x = torch.arange(-(half + 1), half + 1, dtype=torch.float32)[None]
    clip = half / (half + 1)
    for out in (act_quant_ref(x, bits, clip, True), act_quant(x, bits, clip, True, backend="triton")):
        assert torch.equal(out, x) and len(torch.unique(out)) == 2 ** bits
    # without clipping nothing lies beyond −max|x|, so the most negative code is never used (as the authors)
    wide = torch.linspace(-1, 1, 257)[None]
    assert len(torch.unique(act_quant_ref(wide, bits, 1.0, True))) == 2 ** bits - 1


def _quantized(n_out, k, bits, group, seed=0):
    w = torch.randn(n_out, k, generator=torch.Generator().manual_seed(seed))
    p = compute_params(w, bits, group, False)
    return pack_ref(quantize(w, p), bits), p.scale, p.zero


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("m, n, k, group", [(5, 37, 64, 32), (1, 70, 96, 32), (17, 33, 128, 128), (3, 16, 64, 16)])
def test_dequant_gemm_matches_reference(bits, m, n, k, group):
    packed, s, z = _quantized(n, k, bits, group)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(2))
    w = dequantize_packed(packed, s, z, bits, k, group)
    u = UNIT_ROUNDOFF[torch.bfloat16]
    ref = x.double() @ w.double().T
    assert_within(wxa16_gemm(x, packed, s, z, bits, group, backend="triton"), ref,
                  gemm_bound(x, w, w.abs(), u, both_rounded=True), "fp32 in")
    torch.testing.assert_close(wxa16_gemm_ref(x, packed, s, z, bits, group).double(), ref, rtol=1e-5, atol=1e-5)
    xb = x.to(torch.bfloat16)
    ref_b = xb.double() @ w.double().T
    bound_b = gemm_bound(xb.float(), w, w.abs(), u, both_rounded=True)
    assert_within(wxa16_gemm(xb, packed, s, z, bits, group, backend="triton"), ref_b,
                  bound_b + u * (ref_b.abs() + bound_b), "bf16 in, bf16 out")


def test_dequant_gemm_checks_shapes():
    packed, s, z = _quantized(8, 64, 4, 32)
    with pytest.raises(ValueError, match="packed must be int32"):
        wxa16_gemm(torch.randn(2, 64), packed[:, :-1], s, z, 4, 32)
    with pytest.raises(ValueError, match="does not divide"):
        wxa16_gemm(torch.randn(2, 64), packed, s, z, 4, 48)
