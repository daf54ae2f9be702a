"""Every quantization path changes every expert of every MoE layer, stays above an SNR floor, and
leaves the router / lm_head / embeddings as the recipe says."""

from __future__ import annotations

import pytest
import torch

from moeq.quant_core.adapters.model import MoEModel
from moeq.quant_core.functional.affine import snr_db
from tests.conftest import FAMILIES, load_tiny
from tests.quant_core.helpers import quantize_tiny

SNR_FLOOR_DB = {2: 2.0, 3: 8.0, 4: 14.0, 8: 38.0}


def _assert_every_expert_changed(fp_moe: MoEModel, q_moe: MoEModel, floor: float) -> None:
    for i, qb in q_moe.blocks.items():
        fb = fp_moe.blocks[i]
        for e in range(qb.num_experts):
            for name in ("gate_up", "down"):
                w_fp = getattr(fb.experts, name)()[e]
                w_q = getattr(qb.experts, name)()[e]
                assert not torch.equal(w_fp, w_q), f"layer {i} expert {e} {name} unchanged"
                assert snr_db(w_fp, w_q) >= floor, f"layer {i} expert {e} {name} SNR {snr_db(w_fp, w_q):.1f} dB"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_rtn_quantizes_every_expert_and_keeps_router_and_head(tiny_zoo, tmp_path, family, bits):
    fp, q, moe, state = quantize_tiny(tiny_zoo, family, {"weights": {"bits": bits, "group_size": 16}}, tmp_path)
    fp_moe = MoEModel(fp)
    _assert_every_expert_changed(fp_moe, moe, SNR_FLOOR_DB[bits])
    for i, block in moe.blocks.items():
        assert torch.equal(block.router.weight, fp_moe.blocks[i].router.weight)
    assert torch.equal(moe.lm_head().weight, fp_moe.lm_head().weight)
    assert torch.equal(moe.embed().weight, fp_moe.embed().weight)
    for i in range(len(moe.layers)):
        for key, mod in moe.attn_inputs(i).items():
            assert not torch.equal(mod.weight, fp_moe.attn_inputs(i)[key].weight)
    summary = state.bits_summary()
    assert summary["avg_weight_bits"] == pytest.approx(bits)
    assert summary["bits_per_param_with_overhead"] > bits
    assert set(summary["experts"]) == {str(i) for i in moe.blocks}


@pytest.mark.parametrize("family", ["mixtral", "deepseek_v3"])
def test_gptq_calibrates_every_expert_or_records_a_fallback(tiny_zoo, tmp_path, family):
    fp, q, moe, state = quantize_tiny(tiny_zoo, family, {"weights": {"bits": 4, "group_size": 16},
                                                         "techniques": [{"name": "gptq", "min_tokens": 40}]}, tmp_path)
    _assert_every_expert_changed(MoEModel(fp), moe, SNR_FLOOR_DB[4])
    fallbacks = {(f["layer"], f["expert"]) for f in state.fallbacks}
    for layer, counts in state.tokens_per_expert.items():
        for e, c in enumerate(counts):
            assert (c < 40) == ((layer, e) in fallbacks)


def test_quantized_router_is_changed_and_recorded(tiny_zoo, tmp_path):
    fp, q, moe, state = quantize_tiny(tiny_zoo, "qwen3_moe", {"weights": {"bits": 4, "group_size": 16},
                                                              "router": "quantize"}, tmp_path)
    fp_moe = MoEModel(fp)
    for i, block in moe.blocks.items():
        w_fp, w_q = fp_moe.blocks[i].router.weight, block.router.weight
        assert not torch.equal(w_fp, w_q) and snr_db(w_fp, w_q) > 30
        path = f"model.layers.{i}.mlp.gate"
        assert state.records[f"{path}.weight"].role == "router"
        assert state.input_quant[path]["bits"] == 8


def test_activation_quantization_wraps_experts_and_linears(tiny_zoo, tmp_path):
    fp, q, moe, state = quantize_tiny(tiny_zoo, "qwen2_moe", {"weights": {"bits": 16}, "activations": {"bits": 4}},
                                      tmp_path)
    assert set(state.quant_experts) == set(moe.blocks)
    assert any("shared_expert" in p for p in state.input_quant)
    ids = torch.randint(4, 100, (1, 16))
    with torch.no_grad():
        diff = (fp(ids).logits - q(ids).logits).abs().max()
    assert diff > 0  # A4 changes outputs even though weights are untouched
    assert all(torch.equal(a, b) for a, b in zip(fp.parameters(), q.parameters()))


def test_router_gptq_mode_beats_rtn_on_the_routers_calibration_inputs(tiny_zoo):
    from moeq.quant_core.algorithms.router import prepare_router
    from moeq.quant_core.quantized import QuantState
    from moeq.contract.recipe import RouterSpec

    errs = {}
    for mode in ("quantize", "gptq"):
        moe = MoEModel(load_tiny(tiny_zoo, "qwen3_moe"))
        block = moe.blocks[0]
        w = block.router.weight.detach().clone()
        g = torch.Generator().manual_seed(0)
        d = w.shape[1]
        x = torch.randn(512, d, generator=g) @ torch.randn(d, d, generator=g) * 0.3
        state = QuantState()
        prepare_router(block, x, RouterSpec(mode=mode, bits=3), state, "torch")
        rec = next(r for r in state.records.values() if r.role == "router")
        assert torch.equal(rec.dequant(), block.router.weight) and torch.all(rec.params.zero == 4)
        errs[mode] = float(((x @ (w - block.router.weight).T) ** 2).mean())
    assert errs["gptq"] < 0.8 * errs["quantize"]
