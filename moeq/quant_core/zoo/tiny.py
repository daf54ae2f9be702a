"""Random-init `tiny-<family>` checkpoints from transformers configs, for structural tests."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import torch

from moeq.contract.errors import ModelError
from moeq.quant_core.zoo.tokenizer import BOS_ID, EOS_ID, PAD_ID, VOCAB, build_tokenizer

_COMMON = MappingProxyType(dict(
    vocab_size=len(VOCAB), hidden_size=64, intermediate_size=128, num_hidden_layers=3,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
    bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID, tie_word_embeddings=False,
))

_MLA = MappingProxyType(dict(num_key_value_heads=4, kv_lora_rank=32, qk_rope_head_dim=8, qk_nope_head_dim=16,
                             v_head_dim=16, head_dim=8))

TINY_CONFIGS = MappingProxyType({
    "mixtral": dict(num_local_experts=8, num_experts_per_tok=2),
    "qwen2_moe": dict(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=64,
                      shared_expert_intermediate_size=128, norm_topk_prob=False),
    "qwen3_moe": dict(num_experts=16, num_experts_per_tok=4, moe_intermediate_size=48, head_dim=16,
                      norm_topk_prob=True),
    "olmoe": dict(num_experts=16, num_experts_per_tok=4, intermediate_size=48, norm_topk_prob=False),
    "deepseek_v2": dict(**_MLA, n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1,
                        moe_intermediate_size=48, first_k_dense_replace=1, q_lora_rank=None,
                        topk_method="greedy"),
    "deepseek_v3": dict(**_MLA, n_routed_experts=16, num_experts_per_tok=4, n_group=4, topk_group=2,
                        n_shared_experts=1, moe_intermediate_size=48, first_k_dense_replace=1, q_lora_rank=32,
                        routed_scaling_factor=2.5),
})


def tiny_config(family: str):
    from transformers import AutoConfig

    from moeq.quant_core.zoo.tiny_families import MORE_TINY_CONFIGS

    if family in MORE_TINY_CONFIGS:
        model_type, overrides = MORE_TINY_CONFIGS[family]
        return AutoConfig.for_model(model_type, **{**_COMMON, **overrides})
    if family not in TINY_CONFIGS:
        raise ModelError(f"no tiny config for family {family!r} (have: {', '.join([*TINY_CONFIGS, *MORE_TINY_CONFIGS])})")
    return AutoConfig.for_model(family, **{**_COMMON, **TINY_CONFIGS[family]})


def build_tiny(family: str, out_dir: Path, seed: int = 0) -> Path:
    """Create a random-init tiny checkpoint of `family` (plus tokenizer) in `out_dir`."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family), dtype=torch.float32)
    with torch.no_grad():
        for module in model.modules():
            bias = getattr(module, "e_score_correction_bias", None)
            if isinstance(bias, torch.Tensor):  # exercise bias-corrected routing
                bias.copy_(torch.randn_like(bias) * 0.05)
            for name in ("gate_up_proj_bias", "down_proj_bias"):  # exercise expert biases (gpt-oss)
                b = getattr(module, name, None)
                if isinstance(b, torch.Tensor):
                    b.copy_(torch.randn_like(b) * 0.02)
            block_bias = getattr(module, "bias", None)
            if type(module).__name__.endswith(("MoE", "MoA")) and isinstance(block_bias, torch.Tensor):
                block_bias.copy_(torch.randn_like(block_bias) * 0.02)  # exercise an output bias (JetMoE)
            router_bias = getattr(module, "bias", None)
            if type(module).__name__.endswith("TopKRouter") and isinstance(router_bias, torch.Tensor):
                router_bias.copy_(torch.randn_like(router_bias) * 0.1)  # exercise a router bias (gpt-oss)
            for name in ("weight",):
                w = getattr(module, name, None)
                if type(module).__name__.endswith("RMSNorm") and isinstance(w, torch.Tensor):
                    w.copy_(1.0 + 0.1 * torch.randn_like(w))  # non-trivial norms so folding is tested
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    build_tokenizer().save_pretrained(out_dir)
    return out_dir
