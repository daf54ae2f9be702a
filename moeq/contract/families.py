"""The supported families, as data. Add a family by adding a FamilySpec here."""

from __future__ import annotations

from types import MappingProxyType

from moeq.contract.family_spec import FamilySpec

_MLA_INPUTS = ("self_attn.q_proj", "self_attn.q_a_proj", "self_attn.kv_a_proj_with_mqa")

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
)

FAMILIES: MappingProxyType = MappingProxyType({t: s for s in _SPECS for t in s.model_types})
