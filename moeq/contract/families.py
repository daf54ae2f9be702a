"""The described families, as data. Add a family by adding a FamilySpec here.

A family not listed here whose model has routed experts is still found from the model itself
(moeq.quant_core.adapters.detect) and gets the techniques that need only its experts and router;
moeq.contract.coverage says which and why.
"""

from __future__ import annotations

from types import MappingProxyType

from moeq.contract.family_spec import FamilySpec

_MLA_INPUTS = ("self_attn.q_proj", "self_attn.q_a_proj", "self_attn.kv_a_proj_with_mqa")
_LINEAR_ATTN = "hybrid linear-attention layers (Gated DeltaNet: in_proj_* read the input norm, not q/k/v)"
_ZERO_CENTERED = "its RMSNorms scale by (1 + weight), which folding scales into them does not handle"
_NO_TRANSFORMS = ("smoothing", "rotation", "duquant")
# GraniteMoE's layout with a shared MLP in the decoder layer (input_linear: fused gate/up, output_linear)
_GRANITE_SHARED = dict(mlp="block_sparse_moe", router="router", norm_topk_prob=True, shared_experts="shared_mlp",
                       shared_experts_from="layer", mlp_inputs=("input_linear",), mlp_output="output_linear")


def _refuse(features: tuple[str, ...], why: str) -> tuple[tuple[str, str], ...]:
    return tuple((f, why) for f in features)


_SPECS = (
    FamilySpec(name="mixtral", model_types=("mixtral",), norm_topk_prob=True,
               notes="8 experts top-2 softmax router, renormalized top-k weights"),
    FamilySpec(name="qwen2_moe", model_types=("qwen2_moe",),
               shared_experts="shared_expert", shared_gate="shared_expert_gate", shared_gate_act="sigmoid",
               notes="routed experts + one shared expert scaled by a sigmoid gate"),
    FamilySpec(name="qwen3_moe", model_types=("qwen3_moe",),
               notes="128 experts top-8 softmax router, per-head q/k norms"),
    FamilySpec(name="olmoe", model_types=("olmoe",),
               notes="64 experts top-8 softmax router, q/k norms over full projections"),
    FamilySpec(name="deepseek_v2", model_types=("deepseek_v2",), attn_inputs=_MLA_INPUTS,
               shared_experts="shared_experts", scaled_weights=True, norm_topk_prob=False,
               notes="MLA attention, shared experts, first dense layers"),
    FamilySpec(name="deepseek_v3", model_types=("deepseek_v3",), attn_inputs=_MLA_INPUTS,
               shared_experts="shared_experts", routing="sigmoid_grouped_topk",
               router_bias="e_score_correction_bias", scaled_weights=True,
               notes="MLA attention, shared experts, first dense layers, bias-corrected grouped sigmoid routing"),
    # --- families described from transformers 5.2x modeling files (issue 27) ---
    FamilySpec(name="gpt_oss", model_types=("gpt_oss",), router="router", norm_topk_prob=True,
               refuses=(*_refuse(_NO_TRANSFORMS, "experts carry biases and a clamped SwiGLU that the transforms "
                                 "do not fold"),
                        ("router_align", "the router has a bias, which the alignment objective leaves out")),
               notes="softmax over the top-k router logits (router with bias), expert biases, clamped SwiGLU, "
                     "attention sinks"),
    FamilySpec(name="glm4_moe", model_types=("glm4_moe",), shared_experts="shared_experts",
               routing="sigmoid_grouped_topk", router_bias="e_score_correction_bias", scaled_weights=True,
               refuses=_refuse(_NO_TRANSFORMS, "not yet checked on this family"),
               notes="grouped sigmoid routing with a correction bias, shared experts, first dense layers"),
    FamilySpec(name="dots1", model_types=("dots1",), shared_experts="shared_experts",
               routing="sigmoid_grouped_topk", router_bias="e_score_correction_bias", scaled_weights=True,
               refuses=_refuse(_NO_TRANSFORMS, "not yet checked on this family"),
               notes="DeepSeek-V3 routing (grouped sigmoid, correction bias), shared experts, first dense layers"),
    FamilySpec(name="deepseek_v32", model_types=("deepseek_v32",), attn_inputs=_MLA_INPUTS,
               shared_experts="shared_experts", routing="sigmoid_grouped_topk",
               router_bias="e_score_correction_bias", scaled_weights=True,
               refuses=_refuse(_NO_TRANSFORMS, "its sparse-attention indexer also reads the input norm"),
               notes="DeepSeek-V3 MoE with MLA + a lightning indexer (sparse attention), first dense layers"),
    FamilySpec(name="qwen3_next", model_types=("qwen3_next",), token_mixers=("self_attn", "linear_attn"),
               shared_experts="shared_expert", shared_gate="shared_expert_gate", shared_gate_act="sigmoid",
               refuses=_refuse(_NO_TRANSFORMS, f"{_LINEAR_ATTN}; {_ZERO_CENTERED}"),
               notes="softmax top-k, shared expert with a sigmoid gate, " + _LINEAR_ATTN),
    FamilySpec(name="qwen3_5_moe", model_types=("qwen3_5_moe_text",), token_mixers=("self_attn", "linear_attn"),
               shared_experts="shared_expert", shared_gate="shared_expert_gate", shared_gate_act="sigmoid",
               norm_topk_prob=True, refuses=_refuse(_NO_TRANSFORMS, f"{_LINEAR_ATTN}; {_ZERO_CENTERED}"),
               notes="the text model of Qwen3.5-MoE: renormalized softmax top-k, gated shared expert, "
                     + _LINEAR_ATTN),
    FamilySpec(name="minimax_m2", model_types=("minimax_m2",), routing="sigmoid_grouped_topk",
               router_bias="e_score_correction_bias", norm_topk_prob=True,
               refuses=_refuse(_NO_TRANSFORMS, "not yet checked on this family"),
               notes="sigmoid routing with a correction bias kept on the MoE block, renormalized weights"),
    FamilySpec(name="granitemoe", model_types=("granitemoe",), mlp="block_sparse_moe", router="router",
               norm_topk_prob=True,
               refuses=_refuse(_NO_TRANSFORMS, "residual and embedding multipliers are not yet checked"),
               notes="softmax over the top-k logits; Granite's parallel experts (fused gate/up), "
                     "residual multipliers"),
    FamilySpec(name="granitemoeshared", model_types=("granitemoeshared",), **_GRANITE_SHARED,
               refuses=_refuse(_NO_TRANSFORMS, "residual and embedding multipliers are not yet checked"),
               notes="GraniteMoE with a layer-level shared MLP (`shared_mlp`, fused gate/up) added to the MoE output"),
    FamilySpec(name="granitemoe_swa", model_types=("granitemoe_swa",), **_GRANITE_SHARED,
               refuses=_refuse(_NO_TRANSFORMS, "residual and embedding multipliers are not yet checked"),
               notes="GraniteMoE-shared with sliding-window / full attention layers and attention sinks"),
    FamilySpec(name="granitemoehybrid", model_types=("granitemoehybrid",), **_GRANITE_SHARED,
               token_mixers=("self_attn", "mamba"),
               refuses=_refuse(_NO_TRANSFORMS, "hybrid Mamba2 layers (in_proj reads the input norm, not q/k/v); "
                               "residual and embedding multipliers are not yet checked"),
               notes="GraniteMoE-shared with Mamba2 and attention layers (`layer_types`)"),
    FamilySpec(name="jetmoe", model_types=("jetmoe",), router="router.layer", gating="router", expert_call="sorted",
               expert_stacks=("input_linear.weight", "output_linear.weight"), norm_topk_prob=True,
               token_mixers=("self_attention",), attn_inputs=("self_attention.kv_proj",),
               attn_expert_stacks=("self_attention.experts.input_linear", "self_attention.experts.output_linear"),
               attn_routers=("self_attention.experts.router.layer",),
               refuses=(*_refuse((*_NO_TRANSFORMS, "router_align"), "its mixture-of-attention experts (q / o "
                                 "projections routed per token) and the blocks' output biases are not modelled"),
                        ("activations", "its parallel experts run inside the MoE block, where moeq installs no "
                                        "activation quantization")),
               notes="parallel-expert MLP (input_linear / output_linear stacks, softmax over the top-k logits, "
                     "output bias); mixture-of-attention q / o experts quantized per expert as ordinary weights, "
                     "their router kept FP"),
    FamilySpec(name="phimoe", model_types=("phimoe",), router="router", routing="sparsemixer",
               refuses=(*_refuse(_NO_TRANSFORMS, "its norms are LayerNorms with a bias"),
                        ("router_align", "sparsemixer routing has no full expert distribution to align")),
               notes="sparsemixer top-2 routing (masked softmax per pick), LayerNorm with bias"),
    FamilySpec(name="ernie4_5_moe", model_types=("ernie4_5_moe",), shared_experts="shared_experts",
               router_bias="moe_statics.e_score_correction_bias", norm_topk_prob=True,
               refuses=_refuse(_NO_TRANSFORMS, "not yet checked on this family"),
               notes="softmax + correction bias for choice, renormalized weights, shared experts, first dense layers"),
    FamilySpec(name="hunyuan_v1_moe", model_types=("hunyuan_v1_moe",), router="gate.wg",
               shared_experts="shared_mlp", norm_topk_prob=True,
               refuses=_refuse(_NO_TRANSFORMS, "not yet checked on this family"),
               notes="softmax top-k renormalized (router at gate.wg), ungated shared MLP, q/k layernorms"),
    FamilySpec(name="llama4", model_types=("llama4_text",), mlp="feed_forward", router="router",
               shared_experts="shared_expert", routing="sigmoid_topk", norm_topk_prob=False,
               expert_call="scaled_input", experts_transposed=True,
               refuses=(*_refuse((*_NO_TRANSFORMS, "router_align", "activations"),
                                 "router scores scale the experts' input, which these techniques do not model"),),
               notes="the text model of Llama 4: sigmoid scores of the top-k logits multiply the expert input, "
                     "a shared expert, interleaved dense / MoE layers"),
    FamilySpec(name="flex_olmo", model_types=("flex_olmo",),
               refuses=_refuse(_NO_TRANSFORMS, "norms sit after attention and after the MLP (no input norm to fold "
                               "into)"),
               notes="OLMoE-style softmax routing with post-norms (post_attention / post_feedforward)"),
)

FAMILIES: MappingProxyType = MappingProxyType({t: s for s in _SPECS for t in s.model_types})
FAMILY_BY_NAME: MappingProxyType = MappingProxyType({s.name: s for s in _SPECS})
