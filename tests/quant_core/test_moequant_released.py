"""MoEQuant as released (chenzx921020/MoEQuant c9784c2): the router GPTQ-quantized at the weight bits
before the experts' affinity Hessians are taken, per-channel weights, and the reference quantizer's
`--w_clip` error search, checked against a re-typed search on small hand-checkable inputs."""

from __future__ import annotations

import pytest
import torch

from moeq.contract.presets import expand, merge
from moeq.contract.recipe import parse_recipe
from moeq.quant_core.functional.affine import compute_params, fake_quant
from moeq.quant_core.functional.clip import mse_clip
from moeq.quant_core.functional.gptq import gptq_quantize
from tests.quant_core.helpers import quantize_tiny


def _reference_shrink(x: torch.Tensor, bits: int, norm: float = 2.4, grid: int = 100, maxshrink: float = 0.8):
    """The asymmetric branch of the reference weight quantizer's error search, re-typed row by row in
    plain Python: range [min(x, 0), max(x, 0)] shrunk by p = 1 − i/grid; the first p of least Σ|Q(x) − x|^norm."""
    maxq = 2 ** bits - 1
    out = []
    for row in x.tolist():
        lo, hi = min(min(row), 0.0), max(max(row), 0.0)
        best, best_p = float("inf"), None
        for i in range(int(maxshrink * grid)):
            p = 1 - i / grid
            scale = (p * hi - p * lo) / maxq
            zero = round(-p * lo / scale)
            err = sum(abs(scale * (min(max(round(v / scale) + zero, 0), maxq) - zero) - v) ** norm for v in row)
            if err < best:
                best, best_p = err, p
        out.append(best_p)
    return out


def test_mse_clip_picks_the_reference_shrink_per_row():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(6, 16, generator=gen, dtype=torch.float64)
    w[0, 3] = 9.0  # one outlier: the search shrinks this row's range
    _, clips = mse_clip(w, 3, None, symmetric=False)
    ref = _reference_shrink(w, 3)
    assert clips[:, 0].tolist() == pytest.approx(ref, abs=1e-6)
    assert ref[0] < 1.0
    # hand-checked: a row [0, 1, 2, 3] at 2 bits fits the grid exactly at p = 1 (error 0), so p stays 1
    _, exact = mse_clip(torch.tensor([[0.0, 1.0, 2.0, 3.0]]), 2, None, symmetric=False)
    assert exact.tolist() == [[1.0]]


def test_gptq_with_clip_search_uses_the_searched_grid_per_channel():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(8, 32, generator=gen)
    w[:, 0] *= 8
    x = torch.randn(256, 32, generator=gen)
    H = 2 * x.T @ x / 256
    res = gptq_quantize(w, H, 3, None, True, mse=True)
    params, _ = mse_clip(w, 3, None, True)
    torch.testing.assert_close(res.params.scale, params.scale)
    plain = gptq_quantize(w, H, 3, None, True)
    torch.testing.assert_close(plain.params.scale, compute_params(w, 3, None, True).scale)
    assert not torch.equal(res.params.scale, plain.params.scale)


def test_moequant_preset_is_the_released_configuration():
    r = parse_recipe(merge(expand(["moequant"]), {"model": "m", "weights": {"bits": 3}}))
    gptq = r.weight_quantizer
    assert gptq.affinity and gptq.clip_search and not gptq.act_order
    assert r.weights.group_size is None and r.weights.symmetric
    assert (r.router.mode, r.router.bits, r.router.act_bits) == ("gptq", 3, 16)
    assert r.calibration.sampler == "ebss"
    w4a8 = parse_recipe(merge(expand(["moequant"]), {"model": "m", "weights": {"bits": 4}, "activations": {"bits": 8}}))
    assert (w4a8.router.bits, w4a8.router.act_bits) == (4, 8)


def test_moequant_router_is_gptq_quantized_at_the_weight_bits(tiny_zoo, tmp_path):
    bits = 2
    preset = expand(["moequant"])
    preset["techniques"][1]["clip_search"] = False  # the search is tested above; on the 2-core dev box it costs 30 s
    recipe = merge(preset, {"weights": {"bits": bits},  # EBSS: its own tests
                            "calibration": {"source": "random", "sampler": "uniform", "samples": 4, "seq_len": 24}})
    fp, q, moe, state = quantize_tiny(tiny_zoo, "mixtral", recipe, tmp_path)
    assert state.diagnostics["router_gptq"]
    for block in moe.blocks.values():
        w = block.router.weight.data
        distinct = [len(torch.unique(row)) for row in w]
        assert max(distinct) <= 2 ** bits, distinct
        rec = next(r for r in state.records.values() if r.role == "router" and r.layer == block.layer_idx)
        torch.testing.assert_close(rec.dequant(w.dtype), w)
    fp_moe_router = [b for b in fp.modules() if b.__class__.__name__.endswith("SparseMoeBlock")]
    assert fp_moe_router  # the FP model's routers keep their full-precision rows
    assert max(len(torch.unique(row)) for row in fp_moe_router[0].gate.weight.data) > 2 ** bits
