"""Pure quantization math on random tensors: grid, clip search, GPTQ, Hadamard, smoothing factors."""

from __future__ import annotations

import pytest
import torch

from moeq.quant_core.functional.affine import compute_params, dequantize, fake_quant, quantize, snr_db
from moeq.quant_core.functional.clip import search_clip
from moeq.quant_core.functional.gptq import gptq_quantize, hessian
from moeq.quant_core.functional.hadamard import hadamard_matrix, random_hadamard
from moeq.quant_core.functional.smooth import column_absmax, smooth_scales


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("group", [None, 16])
def test_codes_are_in_range_and_dequant_matches_fake_quant(bits, symmetric, group):
    w = torch.randn(3, 8, 64)
    p = compute_params(w, bits, group, symmetric)
    q = quantize(w, p)
    assert q.dtype == torch.uint8 and int(q.max()) <= 2 ** bits - 1
    assert torch.equal(dequantize(q, p), fake_quant(w, p))
    assert p.scale.shape == (3, 8, 64 // (group or 64))
    if symmetric:
        assert torch.all(p.zero == 2 ** (bits - 1))


def test_more_bits_and_smaller_groups_give_higher_snr():
    w = torch.randn(64, 256)
    snrs = [snr_db(w, fake_quant(w, compute_params(w, b, None, False))) for b in (2, 3, 4, 8)]
    assert snrs == sorted(snrs) and snrs[-1] > 40
    assert snr_db(w, fake_quant(w, compute_params(w, 4, 32, False))) > snrs[2]


def test_per_expert_bits_quantize_each_expert_at_its_width():
    w = torch.randn(3, 16, 64)
    p = compute_params(w, torch.tensor([2, 4, 8]), None, True)
    codes = quantize(w, p)
    assert [int(codes[i].max()) <= 2 ** b - 1 for i, b in enumerate((2, 4, 8))] == [True] * 3
    snr = [snr_db(w[i], fake_quant(w, p)[i]) for i in range(3)]
    assert snr[0] < snr[1] < snr[2]


def test_clip_search_never_worse_than_no_clip():
    w = torch.randn(32, 128) * torch.linspace(0.1, 3, 128)
    w[0, 0] = 25.0  # an outlier that clipping should tame
    base = compute_params(w, 3, None, False)
    searched, clips = search_clip(w, 3, None, False)
    err = lambda p: (w - fake_quant(w, p)).pow(2).sum(-1)
    assert torch.all(err(searched) <= err(base) + 1e-6)
    assert float(clips.min()) < 1.0


def _problem(n=3, rows=16, cols=64, tokens=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(n, rows, cols, generator=g)
    X = torch.randn(n, tokens, cols, generator=g) @ torch.randn(cols, cols, generator=g) * 0.3
    H = torch.stack([hessian(X[i]) for i in range(n)])
    return W, X, H


@pytest.mark.parametrize("group", [None, 16])
@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_beats_rtn_on_output_error(group, act_order):
    W, X, H = _problem()
    res = gptq_quantize(W, H, 3, group, False, block_size=32, act_order=act_order)
    rtn = fake_quant(W, compute_params(W, 3, group, False))
    out_err = lambda Q: sum(float(((X[i] @ (W[i] - Q[i]).T) ** 2).mean()) for i in range(W.shape[0]))
    assert out_err(res.weight) < 0.7 * out_err(rtn)
    assert torch.allclose(dequantize(res.codes, res.params), res.weight, atol=1e-5)


def test_batched_gptq_equals_the_per_expert_loop():
    W, _, H = _problem(n=4)
    batched = gptq_quantize(W, H, 4, 16, True, block_size=32)
    loop = torch.stack([gptq_quantize(W[i], H[i], 4, 16, True, block_size=32).weight for i in range(4)])
    assert torch.allclose(batched.weight, loop, atol=1e-6)


def test_gptq_handles_dead_inputs_and_zero_hessian():
    W, _, H = _problem(n=2)
    H[0, :, 5] = 0
    H[0, 5, :] = 0
    H[1] = 0  # an expert that saw no tokens
    res = gptq_quantize(W, H, 4, None, False)
    assert torch.isfinite(res.weight).all()
    assert torch.all(res.weight[0, :, 5] == 0)


@pytest.mark.parametrize("n", [16, 64, 12, 20, 28, 96, 1792])
def test_hadamard_constructions_are_orthogonal(n):
    H = hadamard_matrix(n)
    assert H is not None and torch.all(H.abs() == 1)
    Q, is_h = random_hadamard(n, seed=3)
    assert is_h
    assert torch.allclose(Q @ Q.T, torch.eye(n, dtype=torch.float64), atol=1e-10)


def test_non_hadamard_size_falls_back_to_random_orthogonal():
    Q, is_h = random_hadamard(100)
    assert not is_h
    assert torch.allclose(Q @ Q.T, torch.eye(100, dtype=torch.float64), atol=1e-10)


def test_smooth_scales_follow_the_formula():
    a = torch.tensor([4.0, 1.0, 9.0])
    w = column_absmax(torch.tensor([[1.0, -2.0, 0.5], [0.5, 1.0, -1.0]]))
    assert torch.allclose(w, torch.tensor([1.0, 2.0, 1.0]))
    s = smooth_scales(a, w, 0.5)
    assert torch.allclose(s, a.sqrt() / w.sqrt())


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_symmetric_grid_uses_all_two_to_the_b_codes(bits):
    """scale = 2·max|w|/(2^b − 1), signed codes −2^(b−1) … 2^(b−1)−1: a row spread over the range
    hits every code (2 bits: four levels). At clip 1 the most negative code is reached only on the
    exact tie −max|w|/s = −(2^b−1)/2, so the row is quantized at clip 0.9 to leave no tie."""
    levels = 2 ** bits
    w = torch.linspace(-1.0, 0.99, 512)[None]  # max |w| = 1 on the negative side
    torch.testing.assert_close(compute_params(w, bits, None, True).scale, torch.full((1, 1), 2.0 / (levels - 1)))
    p = compute_params(w, bits, None, True, 0.9)
    torch.testing.assert_close(p.scale, torch.full_like(p.scale, 1.8 / (levels - 1)))
    codes = quantize(w, p)
    assert sorted(set(codes.reshape(-1).tolist())) == list(range(levels))
    signed = sorted(set((dequantize(codes, p) / p.scale).round().reshape(-1).tolist()))
    assert signed == list(range(-levels // 2, levels // 2))


def test_gptq_symmetric_uses_the_full_grid():
    W, _, H = _problem(n=2, rows=32, cols=64)
    res = gptq_quantize(W, H, 2, 16, True, block_size=32)
    assert torch.all(res.params.zero == 2)
    assert set(res.codes.unique().tolist()) == {0, 1, 2, 3}
    torch.testing.assert_close(dequantize(res.codes, res.params), res.weight)
