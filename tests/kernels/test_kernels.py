"""Packing, activation quantization and the dense W·A16 kernel against their pure-torch references, under the
Triton interpreter on CPU with the GPU's operand rounding emulated (conftest). The fused MoE kernel: test_moe_kernel."""

from __future__ import annotations

import pytest
import torch

from kernels.act_quant import act_quant, act_quant_ref
from kernels.dequant_gemm import dequantize_packed, wxa16_gemm, wxa16_gemm_ref
from kernels.packing import pack, pack_ref, packed_bytes, packed_words, unpack, unpack_ref
from quant_core.functional.affine import compute_params, quantize
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
    torch.testing.assert_close(act_quant(x, bits, 0.9, symmetric, backend="triton"),
                               act_quant_ref(x, bits, 0.9, symmetric), rtol=0, atol=1e-6)
    xb = x.to(torch.bfloat16)
    out = act_quant(xb, bits, 0.9, symmetric, backend="triton")
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), act_quant_ref(xb, bits, 0.9, symmetric).float(), rtol=1e-2, atol=1e-2)


def test_act_quant_levels_and_clip():
    x = torch.linspace(-1, 1, 64)[None]
    q4 = act_quant_ref(x, 4, 1.0)
    assert len(torch.unique(q4)) <= 16 and len(torch.unique(act_quant_ref(x, 8, 1.0))) > 16


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
