"""Find an MoE model's parts from the loaded model itself, for families with no description.

transformers builds most MoE blocks through its standard experts implementation
(`transformers.integrations.moe.use_experts_implementation`): one module holding fused 3-D
`gate_up_proj` / `down_proj` parameters, called with (hidden_states, top_k_index, top_k_weights).
From one such module per decoder layer this finds the MoE block (the experts' parent), the router
(the block's [n_experts, hidden] weight), a shared expert (a child with gate/up/down linears) and its
gate (a child linear with one output), and the layer's token mixers. The routing rule, the readers of
each norm and the residual layout are not found this way: techniques that need them are refused
(moeq.contract.coverage).
"""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from moeq.contract.describe import detected_family
from moeq.contract.errors import ModelError
from moeq.contract.family_spec import FamilySpec

LAYER_PATHS = ("model.layers", "model.language_model.layers", "language_model.model.layers")
SHARED_NAMES = ("gate_proj", "up_proj", "down_proj")


def is_standard_experts(module: nn.Module) -> bool:
    """Fused 3-D experts of transformers' standard experts implementation."""
    gu, down = getattr(module, "gate_up_proj", None), getattr(module, "down_proj", None)
    return (isinstance(gu, nn.Parameter) and isinstance(down, nn.Parameter) and gu.dim() == 3 and down.dim() == 3
            and hasattr(module, "_apply_gate"))


def _get(root: nn.Module, dotted: str) -> nn.Module | None:
    obj = root
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _experts_path(layer: nn.Module) -> str | None:
    for name, mod in layer.named_modules():
        if name and is_standard_experts(mod):
            return name
    return None


def _router_path(block: nn.Module, experts_name: str, n: int, d: int) -> str | None:
    found = []
    for name, mod in block.named_modules():
        if not name or name == experts_name or name.startswith(experts_name + "."):
            continue
        w = getattr(mod, "weight", None)
        if isinstance(w, nn.Parameter) and tuple(w.shape) == (n, d):
            found.append(name)
    return min(found, key=lambda s: (s.count("."), s)) if found else None


def _shared(block: nn.Module) -> tuple[str | None, str | None]:
    shared = gate = None
    for name, mod in block.named_children():
        if all(isinstance(getattr(mod, p, None), nn.Linear) for p in SHARED_NAMES) and shared is None:
            shared = name
        elif isinstance(mod, nn.Linear) and mod.out_features == 1 and gate is None:
            gate = name
    return shared, gate


def _unstandard_experts(layer: nn.Module) -> str | None:
    for name, mod in layer.named_modules():
        if name.rsplit(".", 1)[-1] in ("experts", "mlp", "block_sparse_moe", "feed_forward") and any(
                p.dim() == 3 for p in mod.parameters(recurse=False)):
            return f"{name} ({type(mod).__name__})"
    return None


def detect_spec(model: nn.Module, base: FamilySpec | None = None) -> FamilySpec:
    """A FamilySpec with the paths found in `model` (described = False unless `base` says otherwise)."""
    model_type = getattr(model.config, "model_type", type(model).__name__)
    base = base or detected_family(model_type)
    layers_path = next((p for p in LAYER_PATHS if isinstance(_get(model, p), nn.ModuleList)), None)
    if layers_path is None:
        raise ModelError(f"{type(model).__name__}: no decoder layers at {' / '.join(LAYER_PATHS)}")
    layers = list(_get(model, layers_path))
    hit = next(((layer, p) for layer in layers if (p := _experts_path(layer)) is not None), None)
    if hit is None:
        other = next((u for layer in layers if (u := _unstandard_experts(layer)) is not None), None)
        why = (f"its experts {other} are not transformers' standard fused experts (gate_up_proj / down_proj called "
               "with top_k_index / top_k_weights)") if other else "no routed experts found"
        raise ModelError(f"{model_type}: {why}; moeq cannot quantize this family yet")
    layer, path = hit
    mlp, _, experts = path.rpartition(".")
    if not mlp:
        raise ModelError(f"{model_type}: experts at {path} sit directly in the decoder layer; no MoE block")
    block = _get(layer, mlp)
    module = _get(layer, path)
    gu = module.gate_up_proj
    n = int(gu.shape[0])
    d = int(model.config.get_text_config().hidden_size) if hasattr(model.config, "get_text_config") \
        else int(model.config.hidden_size)
    router = _router_path(block, experts, n, d)
    if router is None:
        raise ModelError(f"{model_type}: the MoE block at {mlp} has no router weight of shape [{n}, {d}]")
    shared, _gate = _shared(block)
    mixers = []
    for lay in layers:
        for name, child in lay.named_children():
            if name != mlp and name not in mixers and any(isinstance(m, nn.Linear) for m in child.modules()):
                mixers.append(name)
    post_norm = base.post_attn_norm if _get(layer, base.post_attn_norm) is not None else mlp
    # a shared expert's gate (`gate`) is found but its activation is a family fact: left undescribed
    return replace(base, layers=layers_path, mlp=mlp, experts=experts, router=router, shared_experts=shared,
                   shared_gate=None, shared_gate_act=None,
                   token_mixers=tuple(mixers) or base.token_mixers, post_attn_norm=post_norm)
