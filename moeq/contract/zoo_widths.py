"""The input widths every weight group size must divide, per zoo model (moeq.contract.group_fit), as data:
the Launch form and admission check a group size against a zoo model before it is built (building
needs torch). tests/test_zoo_widths.py derives each entry from the model's config and checks it equals."""

from __future__ import annotations

from types import MappingProxyType

_H64 = {"hidden_size": 64}
_MLA = {"kv_lora_rank (kv_b_proj)": 32, "heads × v_head_dim (o_proj)": 64}
_I = "intermediate_size"
_MOE = "moe_intermediate_size"
_SHARED = "shared_expert_intermediate_size"

ZOO_WIDTHS = MappingProxyType({
    "testbed-mixtral": {"hidden_size": 128, _I: 128},
    "testbed-shared": {"hidden_size": 128, _I: 256, _MOE: 128, _SHARED: 256},
    "testbed-outliers": {"hidden_size": 128, _I: 128},
    "tiny-mixtral": {**_H64, _I: 128},
    "tiny-qwen2_moe": {**_H64, _I: 128, _MOE: 64, _SHARED: 128},
    "tiny-qwen3_moe": {**_H64, _I: 128, _MOE: 48},
    "tiny-olmoe": {**_H64, _I: 48},
    "tiny-deepseek_v2": {**_H64, _I: 128, _MOE: 48, **_MLA},
    "tiny-deepseek_v3": {**_H64, _I: 128, _MOE: 48, "kv_lora_rank (kv_b_proj)": 32, "q_lora_rank (q_b_proj)": 32,
                         "heads × v_head_dim (o_proj)": 64},
    "tiny-gpt_oss": {**_H64, _I: 32},
    "tiny-glm4_moe": {**_H64, _I: 128, _MOE: 32},
    "tiny-dots1": {**_H64, _I: 128, _MOE: 32},
    "tiny-deepseek_v32": {**_H64, _I: 128, _MOE: 32, "kv_lora_rank (kv_b_proj)": 32, "q_lora_rank (q_b_proj)": 32,
                          "heads × v_head_dim (o_proj)": 64},
    "tiny-qwen3_next": {**_H64, _I: 128, _MOE: 32, _SHARED: 32},
    "tiny-qwen3_5_moe": {**_H64, _I: 128, _MOE: 32, _SHARED: 32},
    "tiny-minimax_m2": {**_H64, _I: 32},
    "tiny-granitemoe": {**_H64, _I: 32},
    "tiny-phimoe": {**_H64, _I: 32},
    "tiny-llama4": {**_H64, _I: 32},
    "tiny-ernie4_5_moe": {**_H64, _I: 128, _MOE: 32},
    "tiny-hunyuan_v1_moe": {**_H64, _I: 128, _MOE: 32},
    "tiny-flex_olmo": {**_H64, _I: 32},
    "tiny-solar_open": {**_H64, _I: 128, _MOE: 32},
    "tiny-cohere2_moe": {**_H64, _I: 32},
    "tiny-granitemoeshared": {**_H64, _I: 32, "shared_intermediate_size": 32},
    "tiny-granitemoe_swa": {**_H64, _I: 32, "shared_intermediate_size": 32},
    "tiny-granitemoehybrid": {**_H64, _I: 32, "shared_intermediate_size": 32},
    "tiny-jetmoe": {**_H64, _I: 32, "kv_channels × num_key_value_heads (attention experts)": 32},
})
