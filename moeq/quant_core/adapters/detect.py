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
from moeq.quant_core.adapters.paths import get_path

LAYER_PATHS = ("model.layers", "model.language_model.layers", "language_model.model.layers")


def is_standard_experts(module: nn.Module) -> bool:
    """Fused 3-D experts of transformers' standard experts implementation."""
    gu, down = getattr(module, "gate_up_proj", None), getattr(module, "down_proj", None)
    return (isinstance(gu, nn.Parameter) and isinstance(down, nn.Parameter) and gu.dim() == 3 and down.dim() == 3
            and hasattr(module, "_apply_gate"))


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


def _mlp_names(mod: nn.Module, d: int) -> tuple[tuple[str, ...], str] | None:
    """(input projections, output projection) of a gated MLP `mod`: its child linears reading the
    hidden size, and the one writing it from another size; None when `mod` is no such MLP."""
    linears = {n: m for n, m in mod.named_children() if isinstance(m, nn.Linear)}
    inputs = tuple(n for n, m in linears.items() if m.in_features == d)
    outputs = [n for n, m in linears.items() if m.out_features == d and m.in_features != d]
    if not inputs or len(outputs) != 1 or len(inputs) + 1 != len(linears):
        return None
    return inputs, outputs[0]


def _shared(block: nn.Module, skip: tuple[str, ...], d: int) -> tuple[str | None, tuple | None]:
    """(path, (inputs, output)) of the block's shared expert, or (None, None)."""
    for name, mod in block.named_children():
        if name not in skip and (names := _mlp_names(mod, d)) is not None:
            return name, names
    return None, None


def _unstandard_experts(layer: nn.Module) -> str | None:
    for name, mod in layer.named_modules():
        if name.rsplit(".", 1)[-1] in ("experts", "mlp", "block_sparse_moe", "feed_forward") and any(
                p.dim() == 3 for p in mod.parameters()):
            return f"{name} ({type(mod).__name__})"
    return None


def detect_spec(model: nn.Module, base: FamilySpec | None = None) -> FamilySpec:
    """A FamilySpec with the paths found in `model` (described = False unless `base` says otherwise)."""
    model_type = getattr(model.config, "model_type", type(model).__name__)
    base = base or detected_family(model_type)
    layers_path = next((p for p in LAYER_PATHS if isinstance(get_path(model, p), nn.ModuleList)), None)
    if layers_path is None:
        raise ModelError(f"{type(model).__name__}: no decoder layers at {' / '.join(LAYER_PATHS)}")
    layers = list(get_path(model, layers_path))
    hit = next(((layer, p) for layer in layers if (p := _experts_path(layer)) is not None), None)
    if hit is None:
        other = next((u for layer in layers if (u := _unstandard_experts(layer)) is not None), None)
        why = (f"its experts {other} are not transformers' standard fused experts (gate_up_proj / down_proj called "
               "with top_k_index / top_k_weights)") if other else "the loaded model has no routed experts"
        raise ModelError(f"model_type {model_type!r} is not a supported MoE family: {why}")
    layer, path = hit
    mlp, _, experts = path.rpartition(".")
    if not mlp:
        raise ModelError(f"{model_type}: experts at {path} sit directly in the decoder layer; no MoE block")
    block = get_path(layer, mlp)
    module = get_path(layer, path)
    gu = module.gate_up_proj
    n = int(gu.shape[0])
    d = int(model.config.get_text_config().hidden_size) if hasattr(model.config, "get_text_config") \
        else int(model.config.hidden_size)
    router = _router_path(block, experts, n, d)
    if router is None:
        raise ModelError(f"{model_type}: the MoE block at {mlp} has no router weight of shape [{n}, {d}]")
    shared, names = _shared(block, (experts, router.split(".")[0]), d)
    dense = [lay_mlp for lay in layers if (lay_mlp := get_path(lay, mlp)) is not None and not any(
        is_standard_experts(m) for m in lay_mlp.modules())]
    dense_names = {_mlp_names(m, d) for m in dense}
    if None in dense_names or len(dense_names | ({names} if names else set())) > 1:
        raise ModelError(f"{model_type}: its dense MLPs / shared expert are not one gated-MLP layout "
                         "(gate/up projections in, one projection out); moeq cannot quantize it undescribed")
    mlp_in, mlp_out = names or next(iter(dense_names), None) or (base.mlp_inputs, base.mlp_output)
    mixers = []
    for lay in layers:
        for name, child in lay.named_children():
            if name != mlp and name not in mixers and any(isinstance(m, nn.Linear) for m in child.modules()):
                mixers.append(name)
    for i, lay in enumerate(layers):  # every linear is quantized: none may sit outside the mixer and the MLP
        mixer = next((n for n in mixers if get_path(lay, n) is not None), None)
        stray = [n for n, m in lay.named_modules() if isinstance(m, nn.Linear) and n.split(".")[0] not in (mixer, mlp)]
        if stray:
            raise ModelError(f"{model_type}: layer {i} has linears outside its token mixer and MoE block "
                             f"({', '.join(stray[:3])}); moeq cannot quantize it undescribed")
    post_norm = base.post_attn_norm if get_path(layer, base.post_attn_norm) is not None else mlp
    # a shared expert's gate is a linear with one output, but its activation is a family fact: left
    # undescribed (AGQ then weighs the shared expert's tokens equally)
    return replace(base, layers=layers_path, mlp=mlp, experts=experts, router=router, shared_experts=shared,
                   shared_gate=None, shared_gate_act=None, mlp_inputs=mlp_in, mlp_output=mlp_out,
                   token_mixers=tuple(mixers) or base.token_mixers, post_attn_norm=post_norm)
