"""Torch-free description of where things live in one family of Hugging Face MoE models.

Paths are dotted attribute paths: model-level ones from the CausalLM root, layer-level ones from
a decoder layer, block-level ones from the MoE block (the layer's `mlp`). Algorithms ask these
descriptions; they never branch on `model_type` themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


# config keys (first present wins) for the number of routed experts and experts per token
NUM_EXPERTS_ATTRS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
TOP_K_ATTRS = ("num_experts_per_tok", "moe_k", "moe_topk")


@dataclass(frozen=True)
class FamilySpec:
    name: str
    model_types: tuple[str, ...]
    # config attribute names (first present wins) — used to describe a checkpoint without torch
    num_experts_attrs: tuple[str, ...] = NUM_EXPERTS_ATTRS
    top_k_attrs: tuple[str, ...] = TOP_K_ATTRS
    # model level
    layers: str = "model.layers"
    embed: str = "model.embed_tokens"
    final_norm: str = "model.norm"
    lm_head: str = "lm_head"
    # layer level
    input_norm: str = "input_layernorm"
    post_attn_norm: str = "post_attention_layernorm"
    # readers of the input-norm output; names missing in a given checkpoint are skipped
    attn_inputs: tuple[str, ...] = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
    attn_output: str = "self_attn.o_proj"
    # the layer's token mixers (attention, linear attention); each layer has the first one present
    token_mixers: tuple[str, ...] = ("self_attn",)
    mlp: str = "mlp"
    # block level (inside `mlp` when it is an MoE block)
    router: str = "gate"
    experts: str = "experts"
    shared_experts: str | None = None
    # "layer": `shared_experts` is a path from the decoder layer, its output added to the MoE block's
    # (GraniteMoE-shared's `shared_mlp`, which reads the block's input)
    shared_experts_from: Literal["block", "layer"] = "block"
    shared_gate: str | None = None
    shared_gate_act: Literal["sigmoid"] | None = None
    # dense MLP (first dense layers, shared experts) projection names
    mlp_inputs: tuple[str, ...] = ("gate_proj", "up_proj")
    mlp_output: str = "down_proj"
    # routing semantics, for descriptions and the router-alignment objective
    routing: Literal["softmax_topk", "sigmoid_grouped_topk", "sigmoid_topk", "sparsemixer"] = "softmax_topk"
    # how the block calls its experts: "routed" — transformers' standard experts, handed (tokens, expert
    # ids, gate weights); "scaled_input" — every expert runs on the router's scores times its input
    # (Llama 4: the gate scales the expert *input*, experts called with the tokens alone); "sorted" — the
    # block's `gating` module returns the dispatch sorted by expert (JetMoE: sorted (token, slot) positions,
    # token ids, gates, per-expert counts, logits) and the block runs its `expert_stacks` itself
    expert_call: Literal["routed", "scaled_input", "sorted"] = "routed"
    gating: str | None = None
    # (gate/up, down) [n, out, in] weight stacks on the MoE block in place of one fused experts module
    # (JetMoE's parallel experts `input_linear.weight` / `output_linear.weight`; gate/up concatenated)
    expert_stacks: tuple[str, str] | None = None
    # layer-level modules of the token mixer holding a per-expert weight stack `weight` [n, out, in],
    # called with (tokens sorted by expert, per-expert counts): quantized per expert as ordinary weights
    # (JetMoE's mixture-of-attention q / o projections)
    attn_expert_stacks: tuple[str, ...] = ()
    # layer-level routers inside the token mixer (JetMoE's attention-expert router): kept in full precision
    attn_routers: tuple[str, ...] = ()
    experts_transposed: bool | None = None  # fused experts stored [n, in, out]; None: the module says
    # buffer added only for expert choice: a path on the router, else on the MoE block
    router_bias: str | None = None
    # top-k weights renormalized: True/False for the family, None → the config's `norm_topk_prob`
    norm_topk_prob: bool | None = None
    scaled_weights: bool = False  # gate weights × config.routed_scaling_factor
    # capabilities
    rotation: bool = True
    # False: found from the model (experts, router) but not described (no routing rule, no norm readers)
    described: bool = True
    # (feature, why) for each technique feature this family refuses (moeq.contract.coverage.FEATURES)
    refuses: tuple[tuple[str, str], ...] = ()
    notes: str = ""

    @property
    def has_shared_experts(self) -> bool:
        return self.shared_experts is not None

    @property
    def experts_path(self) -> str:
        """Path from the decoder layer of the module holding the routed experts' weights."""
        return self.mlp if self.expert_stacks is not None else f"{self.mlp}.{self.experts}"

    @property
    def shared_experts_path(self) -> str | None:
        """Path of the shared expert from the decoder layer."""
        if self.shared_experts is None or self.shared_experts_from == "layer":
            return self.shared_experts
        return f"{self.mlp}.{self.shared_experts}"
