"""Expert weights are quantized in chunks of experts (float32 work copies stay small): the codes,
scales, dequantized weights and the error statistics do not depend on the chunk size, and the error
measured while the weights are written back is the one computed from a copy of the originals."""

from __future__ import annotations

import pytest
import torch

import moeq.quant_core.algorithms.weights as weights
from moeq.quant_core.functional.gptq import hessian
from moeq.contract.techniques import GptqConfig, RtnConfig


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("method", [RtnConfig(), RtnConfig(clip_search=True), GptqConfig()], ids=["rtn", "clip", "gptq"])
def test_chunked_expert_quantization_equals_one_batch(monkeypatch, dtype, method):
    torch.manual_seed(0)
    n, rows, cols = 5, 32, 64
    H = torch.stack([hessian(torch.randn(100, cols)) for _ in range(n)])
    bits = torch.tensor([4, 3, 2, 4, 8])
    use_gptq = torch.tensor([True, False, True, True, False])  # GPTQ experts and RTN fallbacks mixed
    scheme = weights.Scheme(16, False, 1.0, method)
    base = (torch.randn(n, rows, cols) * 0.02).to(dtype)
    out = {}
    for limit in (2**40, 2 * rows * cols * 4, 1):  # one batch, two experts, one expert per chunk
        monkeypatch.setattr(weights, "EXPERT_CHUNK_BYTES", limit)
        for lazy in (False, True):  # Hessians given whole, or built per chunk on request
            w = base.clone()
            rec, err, norm = weights.quantize_stacked_measured(w, "k", 0, "experts_down", bits, scheme,
                                                               (lambda sel: H[sel]) if lazy else H, use_gptq)
            out[limit, lazy] = (w, rec.codes, rec.params.scale, rec.params.zero, (err, norm))
    ref = out[2**40, False]
    assert not torch.equal(ref[0], base)  # every expert was quantized
    for got in out.values():
        assert all(torch.equal(a, b) for a, b in zip(got[:4], ref[:4]))
        assert all(torch.equal(a, b) for a, b in zip(got[4], ref[4]))


@pytest.mark.parametrize("transposed", [False, True], ids=["out-in", "in-out storage"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_measured_error_equals_error_from_a_copy(dtype, transposed):
    """The per-expert Σ(q − w)², Σw² taken during the write-back are bit for bit the ones computed
    afterwards from a copy of the original weights (the former way), in either storage layout."""
    torch.manual_seed(1)
    n, rows, cols = 4, 48, 64
    base = (torch.randn(n, cols, rows) * 0.02).to(dtype).transpose(1, 2) if transposed else \
        (torch.randn(n, rows, cols) * 0.02).to(dtype)
    w = base.clone()
    scheme = weights.Scheme(16, True, 1.0, RtnConfig())
    _, err, norm = weights.quantize_stacked_measured(w, "k", 0, "experts_down", torch.tensor([4, 3, 2, 8]), scheme,
                                                     None, torch.zeros(n, dtype=torch.bool))
    f = base.float()
    assert torch.equal(err, (w.float() - f).pow(2).sum((1, 2)))
    assert torch.equal(norm, f.pow(2).sum((1, 2)))
    assert bool((err > 0).all())
