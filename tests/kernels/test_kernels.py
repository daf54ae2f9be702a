"""Every Triton kernel against its pure-torch reference, under the Triton interpreter on CPU:
bit widths, group sizes, odd shapes, experts without tokens, top-1 and top-k > 2, mixed widths."""

from __future__ import annotations

import pytest
import torch

from kernels.act_quant import act_quant, act_quant_ref
from kernels.backend import resolve_backend
from kernels.dequant_gemm import wxa16_gemm, wxa16_gemm_ref
from kernels.moe_gemm import MixedBitExperts, fused_moe, fused_moe_ref
from kernels.packing import pack, pack_ref, packed_bytes, packed_words, unpack, unpack_ref
from quant_core.functional.affine import compute_params, quantize

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
    torch.testing.assert_close(wxa16_gemm(x, packed, s, z, bits, group, backend="triton"),
                               wxa16_gemm_ref(x, packed, s, z, bits, group), rtol=1e-4, atol=1e-4)
    xb = x.to(torch.bfloat16)
    torch.testing.assert_close(wxa16_gemm(xb, packed, s, z, bits, group, backend="triton").float(),
                               wxa16_gemm_ref(xb, packed, s, z, bits, group).float(), rtol=2e-2, atol=0.3)


def test_dequant_gemm_checks_shapes():
    packed, s, z = _quantized(8, 64, 4, 32)
    with pytest.raises(ValueError, match="packed must be int32"):
        wxa16_gemm(torch.randn(2, 64), packed[:, :-1], s, z, 4, 32)
    with pytest.raises(ValueError, match="does not divide"):
        wxa16_gemm(torch.randn(2, 64), packed, s, z, 4, 48)


def _experts(n, out_f, in_f, bits, group, seed):
    w = torch.randn(n, out_f, in_f, generator=torch.Generator().manual_seed(seed)) * 0.1
    p = compute_params(w, bits, group, False)
    return MixedBitExperts.from_codes(quantize(w, p), p.scale, p.zero, bits, group)


@pytest.mark.parametrize("tokens, d, inter, bits, top_k", [
    (7, 64, 32, [4, 4, 4, 4], 2),
    (13, 32, 64, [2, 3, 4, 8, 4, 2], 3),   # mixed widths, top-3
    (5, 64, 32, [3] * 8, 1),              # top-1
    (9, 32, 32, [8, 2, 8, 2, 8], 2),
    (1, 64, 32, [2, 4, 4, 2], 2),         # decode: one token
])
def test_fused_mixed_bit_moe_matches_reference(tokens, d, inter, bits, top_k):
    b = torch.tensor(bits)
    n = len(bits)
    gate_up, down = _experts(n, 2 * inter, d, b, 32, 0), _experts(n, d, inter, b, 32, 1)
    g = torch.Generator().manual_seed(tokens)
    x = torch.randn(tokens, d, generator=g)
    logits = torch.randn(tokens, n, generator=g)
    logits[:, 0] = -1e9  # expert 0 never receives a token
    w, idx = logits.softmax(-1).topk(top_k, dim=-1)
    out = fused_moe(x, idx, w, gate_up, down, backend="triton")
    torch.testing.assert_close(out, fused_moe_ref(x, idx, w, gate_up, down), rtol=1e-4, atol=1e-5)
    assert [grp.bits for grp in gate_up.groups] == sorted(set(bits))


def test_mixed_bit_container_stores_each_expert_at_its_width():
    experts = _experts(4, 64, 64, torch.tensor([2, 4, 4, 8]), 32, 0)
    sizes = {g.bits: g.packed.shape for g in experts.groups}
    assert sizes == {2: (1, 64, 4), 4: (2, 64, 8), 8: (1, 64, 16)}
    assert experts.nbytes() == 4 * 64 * (4 + 2 * 8 + 16) + 2 * 4 * 64 * 2 * 4


def test_backend_resolution():
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    assert resolve_backend("triton", torch.device("cpu")) == "triton"  # interpreter is on in these tests
    with pytest.raises(ValueError):
        resolve_backend("cuda-magic", torch.device("cpu"))
