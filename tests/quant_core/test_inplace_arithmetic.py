"""The in-place forms that keep a streamed chunk's working set small compute exactly what the
out-of-place expressions they replaced computed (issue 31: same numbers, fewer copies)."""

from __future__ import annotations

import pytest
import torch

from moeq.quant_core.functional.affine import QuantParams, _expand, _grouped, compute_params, dequantize, quantize
from moeq.quant_core.functional.gptq import _inverse_cholesky, gptq_quantize, hessian


def _former_inverse_cholesky(H: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(H.shape[-1], dtype=H.dtype)
    mean_diag = torch.diagonal(H, dim1=-2, dim2=-1).mean(dim=-1)[:, None, None]
    for extra in (0.0, 0.01, 0.1, 1.0, 10.0):
        L, info = torch.linalg.cholesky_ex(H + extra * mean_diag * eye)
        if int(info.max()) == 0:
            U, info2 = torch.linalg.cholesky_ex(torch.cholesky_inverse(L), upper=True)
            if int(info2.max()) == 0:
                return U
    raise AssertionError("not positive definite")


@pytest.mark.parametrize("definite", [True, False], ids=["first try", "extra dampening"])
def test_inverse_cholesky_equals_the_identity_matrix_form(definite):
    torch.manual_seed(0)
    x = torch.randn(3, 40 if definite else 20, 32)  # 20 samples of 32 columns: singular, needs more damping
    H = torch.stack([hessian(x[i]) for i in range(3)])
    H[0, 3, 5] = H[0, 5, 3] = -0.0  # a negative zero off the diagonal
    assert torch.equal(_inverse_cholesky(H.clone()), _former_inverse_cholesky(H))


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_on_scratch_inputs_equals_gptq_on_copies(act_order):
    torch.manual_seed(1)
    W = torch.randn(2, 24, 64)
    H = torch.stack([hessian(torch.randn(80, 64)) for _ in range(2)])
    H[1, :, 7] = H[1, 7, :] = 0.0  # a dead column
    ref = gptq_quantize(W, H, 3, 16, False, block_size=32, act_order=act_order)
    got = gptq_quantize(W.clone(), H.clone(), 3, 16, False, block_size=32, act_order=act_order, scratch=True)
    for a, b in zip((ref.weight, ref.codes, ref.params.scale, ref.params.zero, ref.loss),
                    (got.weight, got.codes, got.params.scale, got.params.zero, got.loss)):
        assert torch.equal(a, b)


def test_hessian_equals_the_out_of_place_expression():
    torch.manual_seed(2)
    x, c = torch.randn(50, 48), torch.rand(50)
    xw = x * c.clamp(min=0).sqrt()[:, None]
    assert torch.equal(hessian(x), 2.0 * (x.T @ x) / 50)
    assert torch.equal(hessian(x, c), 2.0 * (xw.T @ xw) / 50)


@pytest.mark.parametrize("symmetric", [False, True])
def test_quantize_and_dequantize_equal_the_out_of_place_expressions(symmetric):
    torch.manual_seed(3)
    w = torch.randn(3, 16, 64).to(torch.bfloat16)
    p = compute_params(w, torch.tensor([2, 4, 8]), 16, symmetric, 0.9)
    wg = _grouped(w.float(), 16)
    maxq = _expand(p.maxq, 3).float()
    codes = torch.clamp(torch.round(wg / p.scale[..., None]) + p.zero[..., None], torch.zeros_like(maxq), maxq)
    codes = codes.reshape(w.shape).to(torch.uint8)
    assert torch.equal(quantize(w, p), codes)
    qg = _grouped(codes.float(), 16)
    deq = ((qg - p.zero[..., None]) * p.scale[..., None]).reshape(w.shape)
    assert torch.equal(dequantize(codes, p), deq)
    assert torch.equal(dequantize(codes, p, torch.bfloat16), deq.to(torch.bfloat16))
    as_float = codes.float()  # float codes are not overwritten
    dequantize(as_float, QuantParams(p.scale, p.zero, p.bits, 16, symmetric))
    assert torch.equal(as_float, codes.float())
