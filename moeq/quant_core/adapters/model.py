"""Runtime view over a loaded Hugging Face MoE model, driven by its FamilySpec.

Routed experts are exposed as weight *views* oriented [expert, out, in] into the model's own
fused 3-D parameters (moeq.quant_core.adapters.experts) or per-expert weight stacks
(moeq.quant_core.adapters.stacked), so that any in-place write lands in the model (never a dropped copy).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn

from moeq.contract.families import FAMILIES
from moeq.contract.family_spec import TOP_K_ATTRS, FamilySpec
from moeq.contract.errors import ModelError
from moeq.quant_core.functional.routing import RoutingRule
from moeq.quant_core.adapters.experts import ExpertGroup
from moeq.quant_core.adapters.paths import get_path  # noqa: F401  (re-exported: the adapters' one path helper)
from moeq.quant_core.adapters.stacked import StackedExperts, sorted_dispatch

EXPERT_ARG_NAMES = (("hidden_states",), ("top_k_index", "router_indices"), ("top_k_weights", "routing_weights"))


def expert_call_args(args: tuple, kwargs: dict) -> tuple:
    """(hidden_states, top_k_index, top_k_weights) of a call to standard experts, however passed;
    (hidden_states,) of a call with the input alone (scaled-input experts: Llama 4)."""
    if len(args) + len(kwargs) == 1:
        return (args[0] if args else kwargs.get("hidden_states", next(iter(kwargs.values()))),)
    vals = list(args[:3])
    for names in EXPERT_ARG_NAMES[len(vals):]:
        vals.append(next(kwargs[n] for n in names if n in kwargs))
    return tuple(vals)


class _Dispatched(Exception):
    """Ends a block's forward pass once its experts have been handed their tokens."""


def spec_for_model(model: nn.Module) -> FamilySpec:
    """The family description of `model`'s model_type, or the parts found in the model itself."""
    from moeq.quant_core.adapters.detect import detect_spec

    spec = FAMILIES.get(getattr(model.config, "model_type", None))
    return spec if spec is not None else detect_spec(model)



def set_path(root: nn.Module, dotted: str, value: nn.Module) -> None:
    parent_path, _, name = dotted.rpartition(".")
    parent = get_path(root, parent_path) if parent_path else root
    if parent is None:
        raise ModelError(f"cannot set {dotted}: parent is missing")
    setattr(parent, name, value)


@dataclass
class MoEBlock:
    """One decoder layer's MoE block with its parts resolved."""

    layer_idx: int
    layer: nn.Module
    block: nn.Module
    router: nn.Module
    experts: ExpertGroup  # or StackedExperts
    shared: nn.Module | None
    shared_gate: nn.Module | None
    spec: FamilySpec
    config: object = None

    @property
    def num_experts(self) -> int:
        return self.experts.num_experts

    def routing_rule(self) -> RoutingRule:
        """How this block scores, selects and weights experts, from the family spec and the config."""
        s, c = self.spec, self.config
        sigmoid = s.routing in ("sigmoid_grouped_topk", "sigmoid_topk")
        grouped = s.routing == "sigmoid_grouped_topk" or getattr(c, "topk_method", None) == "group_limited_greedy"
        norm = s.norm_topk_prob if s.norm_topk_prob is not None else bool(getattr(c, "norm_topk_prob", False))
        mixer = s.routing == "sparsemixer"
        return RoutingRule(
            top_k=self.top_k, score="sigmoid" if sigmoid else "softmax", norm_topk_prob=norm and not mixer,
            n_group=int(getattr(c, "n_group", None) or 1) if grouped else 1,
            topk_group=int(getattr(c, "topk_group", None) or 1) if grouped else 1,
            group_score="top2_sum" if sigmoid else "max",
            scaling=float(getattr(c, "routed_scaling_factor", None) or 1.0) if s.scaled_weights else 1.0,
            sparsemixer_eps=float(getattr(c, "router_jitter_noise", 0.0) or 0.0) if mixer else None)

    def routing_bias(self) -> torch.Tensor | None:
        """The selection-only bias (DeepSeek-V3 e_score_correction_bias), on the router or the block, or None."""
        if self.spec.router_bias is None:
            return None
        b = get_path(self.router, self.spec.router_bias)
        b = get_path(self.block, self.spec.router_bias) if b is None else b
        return None if b is None else b.detach().float().reshape(-1)

    @property
    def top_k(self) -> int:
        k = getattr(self.router, "top_k", None) or getattr(self.block, "top_k", None)
        k = k or next((getattr(m, "top_k") for m in self.block.children() if isinstance(getattr(m, "top_k", None), int)),
                      None)
        if k is None:
            k = next((getattr(self.config, a) for a in TOP_K_ATTRS if getattr(self.config, a, None)), None)
            k = k[self.layer_idx] if isinstance(k, (list, tuple)) else k
        if k is None:
            raise ModelError(f"layer {self.layer_idx}: cannot find the router's top_k")
        return int(k)

    def scaled_input_dispatch(self, router_output) -> tuple[torch.Tensor, torch.Tensor]:
        """(index, scores) of a scaled-input router's output (Llama 4: (scores [T, n], logits [T, n]),
        scores zero off the top-k)."""
        scores, logits = router_output
        index = logits.topk(self.top_k, dim=-1).indices
        return index, scores.gather(-1, index)

    def expert_inputs(self, x: torch.Tensor, index: torch.Tensor, weights: torch.Tensor):
        """(inputs, index, gate weights) as the experts see them: for scaled-input blocks each routed
        (token, slot) enters its expert as weight · x with gate weight 1."""
        if self.spec.expert_call != "scaled_input":
            return x, index, weights
        k = index.shape[1]
        xs = (x[:, None, :] * weights[..., None].to(x.dtype)).reshape(-1, x.shape[-1]) if k > 1 else \
            x * weights.to(x.dtype)
        return xs, index.reshape(-1, 1), torch.ones(index.numel(), 1, dtype=weights.dtype, device=weights.device)

    @torch.no_grad()
    def dispatch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(index [T, k], gate weights [T, k]) the block hands its experts for tokens x [T, d]: the
        block's own routing, read where it calls the experts (the pass ends there)."""
        if self.spec.expert_call == "scaled_input":
            return self.scaled_input_dispatch(self.router(x))
        if self.spec.expert_call == "sorted":
            index, weights, _ = sorted_dispatch(self.gating()(x))
            return index, weights
        got: list = []

        def hook(module, args, kwargs):
            got.append(expert_call_args(args, kwargs)[1:])
            raise _Dispatched

        handle = self.experts.module.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            self.block(x[None])
        except _Dispatched:
            pass
        finally:
            handle.remove()
        if not got:
            raise ModelError(f"layer {self.layer_idx}: the MoE block never called its experts")
        index, weights = got[0]
        return index.reshape(x.shape[0], -1), weights.reshape(x.shape[0], -1)

    def gating(self) -> nn.Module:
        """The module whose output is the sorted dispatch (expert_call "sorted")."""
        gating = get_path(self.block, self.spec.gating or "")
        if gating is None:
            raise ModelError(f"layer {self.layer_idx}: no gating module at {self.spec.gating}")
        return gating

    def router_weight(self) -> torch.Tensor:
        return self.router.weight.data

    def shared_linears(self) -> dict[str, nn.Linear]:
        if self.shared is None:
            return {}
        names = (*self.spec.mlp_inputs, self.spec.mlp_output)
        return {n: get_path(self.shared, n) for n in names if get_path(self.shared, n) is not None}

    def shared_gate_weight(self, x: torch.Tensor) -> torch.Tensor | None:
        """Per-token weight the block applies to the shared expert output (None: unweighted)."""
        if self.shared_gate is None:
            return None
        g = self.shared_gate(x)
        return torch.sigmoid(g) if self.spec.shared_gate_act == "sigmoid" else g


class MoEModel:
    """A causal LM plus its FamilySpec: finds layers, MoE blocks, linears by role."""

    def __init__(self, model: nn.Module, spec: FamilySpec | None = None) -> None:
        self.model = model
        self.spec = spec or spec_for_model(model)
        layers = get_path(model, self.spec.layers)
        if layers is None:
            raise ModelError(f"{type(model).__name__}: no decoder layers at {self.spec.layers}")
        self.layers: list[nn.Module] = list(layers)

    @property
    def config(self):
        return self.model.config

    @cached_property
    def blocks(self) -> dict[int, MoEBlock]:
        out = {}
        for i, layer in enumerate(self.layers):
            block = get_path(layer, self.spec.mlp)
            experts = self._experts(block)
            if experts is None:
                continue
            router = get_path(block, self.spec.router)
            if router is None or not hasattr(router, "weight"):
                raise ModelError(f"layer {i}: MoE block without a router at {self.spec.router}")
            out[i] = MoEBlock(
                layer_idx=i, layer=layer, block=block, router=router,
                experts=experts,
                shared=get_path(layer, self.spec.shared_experts_path) if self.spec.shared_experts else None,
                shared_gate=get_path(block, self.spec.shared_gate) if self.spec.shared_gate else None,
                spec=self.spec, config=self.model.config,
            )
        if not out:
            raise ModelError(f"{type(self.model).__name__}: no MoE blocks found; moeq needs a Mixture-of-Experts model")
        return out

    def _experts(self, block: nn.Module | None) -> ExpertGroup | None:
        """The routed experts of MLP `block`, or None when it is a dense MLP."""
        stacks = self.spec.expert_stacks
        if block is None:
            return None
        if stacks is not None:
            return StackedExperts(block, stacks) if get_path(block, stacks[0].rpartition(".")[0]) is not None \
                else None
        experts = get_path(block, self.spec.experts)
        return None if experts is None else ExpertGroup(experts, self.spec.experts_transposed)

    def moe_blocks(self) -> list[MoEBlock]:
        return list(self.blocks.values())

    def replace_experts(self, i: int, module: nn.Module) -> None:
        """Swap layer i's experts module (same call signature and parameters) and update the view."""
        block = self.blocks[i]
        if self.spec.expert_stacks is not None:
            raise ModelError(f"family {self.spec.name}: its experts are weight stacks run by the block; "
                             "they cannot be replaced by a module")
        setattr(block.block, self.spec.experts, module)
        block.experts = ExpertGroup(module, self.spec.experts_transposed)

    def input_norm(self, i: int) -> nn.Module:
        return get_path(self.layers[i], self.spec.input_norm)

    def post_attn_norm(self, i: int) -> nn.Module:
        return get_path(self.layers[i], self.spec.post_attn_norm)

    def token_mixer(self, i: int) -> str:
        """Path of layer i's token mixer (attention or linear attention) inside the layer."""
        for name in self.spec.token_mixers:
            if get_path(self.layers[i], name) is not None:
                return name
        raise ModelError(f"layer {i}: none of {', '.join(self.spec.token_mixers)} found")

    def attn_inputs(self, i: int) -> dict[str, nn.Linear]:
        layer = self.layers[i]
        return {n: get_path(layer, n) for n in self.spec.attn_inputs if get_path(layer, n) is not None}

    def attn_expert_stacks(self, i: int) -> dict[str, nn.Module]:
        """Layer i's token-mixer modules holding per-expert weight stacks, keyed by path inside the layer."""
        layer = self.layers[i]
        return {p: get_path(layer, p) for p in self.spec.attn_expert_stacks if get_path(layer, p) is not None}

    def attn_output(self, i: int) -> dict[str, nn.Linear]:
        return {self.spec.attn_output: get_path(self.layers[i], self.spec.attn_output)}

    def dense_mlp(self, i: int) -> dict[str, nn.Linear]:
        """Linears of a dense (non-MoE) MLP layer, keyed by path inside the layer."""
        if i in self.blocks:
            return {}
        mlp = get_path(self.layers[i], self.spec.mlp)
        names = (*self.spec.mlp_inputs, self.spec.mlp_output)
        return {f"{self.spec.mlp}.{n}": get_path(mlp, n) for n in names if get_path(mlp, n) is not None}

    def embed(self) -> nn.Embedding:
        return get_path(self.model, self.spec.embed)

    def lm_head(self) -> nn.Linear:
        return get_path(self.model, self.spec.lm_head)

    def final_norm(self) -> nn.Module:
        return get_path(self.model, self.spec.final_norm)

    def dense_linears(self, i: int) -> dict[str, nn.Linear]:
        """All non-expert, non-router linears of layer i, keyed by path inside the layer."""
        out = {**self.attn_inputs(i), **self.attn_output(i), **self.dense_mlp(i)}
        block = self.blocks.get(i)
        if block is not None:
            prefix = self.spec.shared_experts_path
            out.update({f"{prefix}.{n}": m for n, m in block.shared_linears().items()})
        return out
