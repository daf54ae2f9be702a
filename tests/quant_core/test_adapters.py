"""Adapters find every MoE layer and expert of every family, and the dispatch recorder captures
what the block actually does (checked by recomputing the experts' output from the record)."""

from __future__ import annotations

import json

import pytest
import torch

from moeq.contract.describe import describe_dir, get_family
from moeq.quant_core.adapters.dispatch import DispatchRecorder
from moeq.quant_core.adapters.model import MoEModel
from moeq.contract.errors import ModelError, UnsupportedFamilyError
from tests.conftest import FAMILIES, load_tiny


@pytest.mark.parametrize("family", FAMILIES)
def test_adapter_finds_all_moe_layers_and_experts(tiny_zoo, family):
    model = load_tiny(tiny_zoo, family)
    moe = MoEModel(model)
    info = describe_dir(tiny_zoo / f"tiny-{family}")
    assert sorted(moe.blocks) == list(info.moe_layers)
    for block in moe.moe_blocks():
        assert block.num_experts == info.num_experts
        assert block.top_k == info.top_k
        assert block.experts.gate_up().shape == (info.num_experts, 2 * block.experts.intermediate_size, info.hidden_size)
        assert (block.shared is not None) == info.shared_experts
    dense = [i for i in range(info.num_layers) if i not in moe.blocks]
    for i in dense:
        assert moe.dense_mlp(i), f"dense layer {i} should expose its MLP linears"


@pytest.mark.parametrize("family", FAMILIES)
def test_recorded_dispatch_reproduces_the_experts_output(tiny_zoo, family):
    model = load_tiny(tiny_zoo, family)
    moe = MoEModel(model)
    outputs = {}
    hooks = [b.experts.module.register_forward_hook(
        lambda m, a, out, i=i: outputs.__setitem__(i, out.detach())) for i, b in moe.blocks.items()]
    ids = torch.randint(4, 100, (2, 24), generator=torch.Generator().manual_seed(0))
    with DispatchRecorder(moe, keep_inputs=True) as rec, torch.no_grad():
        model(input_ids=ids)
    for h in hooks:
        h.remove()
    for i, block in moe.blocks.items():
        d = rec.take(i)
        assert d.index.shape == (48, block.top_k) and d.logits.shape == (48, block.num_experts)
        recomputed = torch.zeros_like(outputs[i])
        with torch.no_grad():
            for t in range(d.num_tokens):
                for slot in range(block.top_k):
                    e = int(d.index[t, slot])
                    recomputed[t] += d.weights[t, slot] * block.experts.expert_output(e, d.inputs[t:t + 1])[0]
        torch.testing.assert_close(recomputed, outputs[i], rtol=1e-4, atol=1e-5)


def test_biased_grouped_routing_differs_from_plain_topk_of_logits(tiny_zoo):
    """DeepSeek-V3 picks experts with a bias and group limits: recomputing top-k from logits is wrong."""
    model = load_tiny(tiny_zoo, "deepseek_v3")
    moe = MoEModel(model)
    with DispatchRecorder(moe) as rec, torch.no_grad():
        model(input_ids=torch.randint(4, 100, (4, 32), generator=torch.Generator().manual_seed(1)))
    mismatched = 0
    for i, block in moe.blocks.items():
        d = rec.take(i)
        naive = d.logits.topk(block.top_k, dim=-1).indices.sort(-1).values
        mismatched += int((naive != d.index.sort(-1).values).any(-1).sum())
    assert mismatched > 0


def test_unsupported_family_lists_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 2}))
    with pytest.raises(UnsupportedFamilyError) as err:
        describe_dir(tmp_path)
    assert "llama" in str(err.value) and "mixtral" in str(err.value) and "deepseek_v3" in str(err.value)


def test_dense_config_in_an_moe_family_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mixtral", "num_local_experts": 1}))
    with pytest.raises(ModelError, match="1 expert"):
        describe_dir(tmp_path)


def test_family_specs_are_data():
    spec = get_family("qwen2_moe")
    assert spec.shared_gate_act == "sigmoid" and spec.has_shared_experts
    assert get_family("deepseek_v3").router_bias == "e_score_correction_bias"
