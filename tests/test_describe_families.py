"""Issue 27, torch-free: admission describes any MoE config.json (described family or not), reads the
new families' MoE-layer switches, and names what it refuses in one line."""

from __future__ import annotations

import pytest

from moeq.contract.coverage import check_recipe_family, refusal, support
from moeq.contract.describe import describe_config, family_for_config
from moeq.contract.errors import RecipeError, UnsupportedFamilyError
from moeq.contract.families import FAMILY_BY_NAME
from moeq.contract.recipe import parse_recipe


def test_an_undescribed_moe_config_is_admitted_and_marked():
    info = describe_config({"model_type": "solar_open", "num_hidden_layers": 4, "n_routed_experts": 16,
                            "num_experts_per_tok": 4, "first_k_dense_replace": 1})
    assert (info.family, info.described, info.moe_layers, info.num_experts, info.top_k) == \
        ("solar_open", False, (1, 2, 3), 16, 4)


@pytest.mark.parametrize("config, layers", [
    ({"model_type": "ernie4_5_moe", "moe_num_experts": 8, "moe_k": 2, "moe_layer_start_index": 1,
      "moe_layer_end_index": 2, "moe_layer_interval": 1}, (1, 2)),
    ({"model_type": "deepseek_v32", "n_routed_experts": 8, "num_experts_per_tok": 2,
      "mlp_layer_types": ["dense", "sparse", "dense", "sparse"]}, (1, 3)),
    ({"model_type": "qwen3_next", "num_experts": 8, "num_experts_per_tok": 2, "mlp_only_layers": [3]}, (0, 1, 2)),
    ({"model_type": "afmoe", "num_experts": 8, "num_experts_per_tok": 2, "num_dense_layers": 2}, (2, 3)),
])
def test_moe_layers_from_each_familys_switches(config, layers):
    assert describe_config({"num_hidden_layers": 4, **config}).moe_layers == layers


def test_dense_and_multimodal_configs_are_one_line():
    with pytest.raises(UnsupportedFamilyError, match="declares no routed experts"):
        describe_config({"model_type": "llama", "num_hidden_layers": 2})
    with pytest.raises(UnsupportedFamilyError, match="give a checkpoint of its text model"):
        describe_config({"model_type": "qwen3_5_moe", "text_config": {"model_type": "qwen3_5_moe_text",
                                                                      "num_experts": 8}})


def test_undescribed_families_refuse_only_what_needs_a_description():
    spec = family_for_config({"model_type": "cohere2_moe", "num_experts": 8})
    refused = {f for f, why in support(spec).items() if why is not None}
    assert refused == {"smoothing", "rotation", "duquant", "router_align"}
    line = refusal(spec, "smoothing")
    assert line.startswith("family cohere2_moe cannot take smoothing") and "\n" not in line
    with pytest.raises(RecipeError, match="family cohere2_moe cannot take rotation"):
        check_recipe_family(parse_recipe({"model": "x", "techniques": ["rotation", "gptq"]}), spec)
    check_recipe_family(parse_recipe({"model": "x", "techniques": ["agq"], "router": "gptq",
                                      "allocation": {"method": "router_norm", "avg_bits": 3.0, "tiers": [2, 4]}}),
                        spec)


def test_original_families_keep_every_technique():
    for name in ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2", "deepseek_v3"):
        assert all(why is None for why in support(FAMILY_BY_NAME[name]).values()), name


def test_family_refusals_name_known_features():
    from moeq.contract.coverage import FEATURES

    for spec in FAMILY_BY_NAME.values():
        assert {f for f, _ in spec.refuses} <= set(FEATURES), spec.name
