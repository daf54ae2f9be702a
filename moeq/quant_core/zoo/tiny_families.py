"""Tiny random configs of the families added from transformers' modeling files (issue 27).

family → (model_type for AutoConfig.for_model, config overrides on top of the common tiny sizes).
Some have shared experts, first dense layers or hybrid (linear-attention) layers, so that each
family's quirks are exercised by the structural tests.
"""

from __future__ import annotations

from types import MappingProxyType

_MLA = dict(num_key_value_heads=4, kv_lora_rank=32, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=16,
            head_dim=8)
_GDN = dict(linear_num_value_heads=4, linear_num_key_heads=2, linear_key_head_dim=16, linear_value_head_dim=16,
            head_dim=16, layer_types=["linear_attention", "full_attention", "linear_attention"])
_GROUPED = dict(n_routed_experts=8, num_experts_per_tok=2, n_group=2, topk_group=1, n_shared_experts=1,
                moe_intermediate_size=32, first_k_dense_replace=1, routed_scaling_factor=2.5, norm_topk_prob=True)

MORE_TINY_CONFIGS = MappingProxyType({
    "gpt_oss": ("gpt_oss", dict(num_local_experts=6, num_experts_per_tok=2, head_dim=16, intermediate_size=32,
                                sliding_window=4096)),
    "glm4_moe": ("glm4_moe", dict(_GROUPED)),
    "dots1": ("dots1", dict(_GROUPED)),
    "deepseek_v32": ("deepseek_v32", dict(**_MLA, **_GROUPED, q_lora_rank=32, index_topk=16, index_n_heads=2,
                                          index_head_dim=16)),
    "qwen3_next": ("qwen3_next", dict(**_GDN, num_experts=6, num_experts_per_tok=2, moe_intermediate_size=32,
                                      shared_expert_intermediate_size=32, mlp_only_layers=[2], norm_topk_prob=True)),
    "qwen3_5_moe": ("qwen3_5_moe_text", dict(**_GDN, num_experts=6, num_experts_per_tok=2, moe_intermediate_size=32,
                                             shared_expert_intermediate_size=32)),
    "minimax_m2": ("minimax_m2", dict(num_local_experts=6, num_experts_per_tok=2, head_dim=16, intermediate_size=32)),
    "granitemoe": ("granitemoe", dict(num_local_experts=6, num_experts_per_tok=2, intermediate_size=32)),
    "granitemoeshared": ("granitemoeshared", dict(num_local_experts=6, num_experts_per_tok=2, intermediate_size=32,
                                                  shared_intermediate_size=32)),
    "granitemoe_swa": ("granitemoe_swa", dict(num_local_experts=6, num_experts_per_tok=2, intermediate_size=32,
                                              shared_intermediate_size=32, sliding_window=8,
                                              layer_types=["sliding_attention", "full_attention",
                                                           "sliding_attention"])),
    "granitemoehybrid": ("granitemoehybrid", dict(num_local_experts=6, num_experts_per_tok=2, intermediate_size=32,
                                                  shared_intermediate_size=32, mamba_n_heads=8, mamba_d_state=16,
                                                  mamba_chunk_size=16, position_embedding_type="rope",
                                                  layer_types=["linear_attention", "full_attention",
                                                               "linear_attention"])),
    "jetmoe": ("jetmoe", dict(num_local_experts=6, num_experts_per_tok=2, intermediate_size=32, kv_channels=16)),
    "phimoe": ("phimoe", dict(num_local_experts=6, num_experts_per_tok=2, intermediate_size=32)),
    "ernie4_5_moe": ("ernie4_5_moe", dict(moe_num_experts=6, moe_k=2, moe_intermediate_size=32,
                                          moe_num_shared_experts=1, moe_layer_start_index=1)),
    "hunyuan_v1_moe": ("hunyuan_v1_moe", dict(num_experts=6, moe_topk=2, num_shared_expert=1,
                                              moe_intermediate_size=32, head_dim=16)),
    "flex_olmo": ("flex_olmo", dict(num_experts=6, num_experts_per_tok=2, intermediate_size=32)),
    "llama4": ("llama4_text", dict(num_local_experts=6, num_experts_per_tok=1, intermediate_size=32,
                                   intermediate_size_mlp=64, interleave_moe_layer_step=2, head_dim=16)),
    # not described in moeq.contract.families: found from the model (RTN/GPTQ/AGQ/allocation/evaluation only)
    "solar_open": ("solar_open", dict(n_routed_experts=6, num_experts_per_tok=2, n_shared_experts=1,
                                      moe_intermediate_size=32, head_dim=16)),
    "cohere2_moe": ("cohere2_moe", dict(num_experts=6, num_experts_per_tok=2, intermediate_size=32, head_dim=16,
                                        sliding_window=4096)),
})
UNDESCRIBED = ("solar_open", "cohere2_moe")
