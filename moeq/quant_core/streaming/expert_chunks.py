"""A streamed layer's routed experts, read, used and released a chunk of experts at a time.

The layer's other parts (attention, norms, router, shared experts) are loaded whole by
`load_layer_shell`; the experts module keeps its parameters on the meta device until
`load_experts(e0, e1)` gives it exactly experts [e0, e1) — its per-expert parameters resized to
the chunk and filled through transformers' own key conversion — and `release_experts` returns it
to meta at full size. The experts may be stored one tensor per expert (Mixtral's, DeepSeek's,
Qwen's on-disk layout: renumbered 0..c-1) or fused, one tensor per weight with the experts as its
first dimension (gpt-oss', Llama 4's and Granite's layout, MXFP4 blocks and scales included: only
the chunk's rows are read and dequantized); the experts module needs `num_experts`.
`chunk_unavailable_reason` says why a layer cannot be chunked.
"""

from __future__ import annotations

import copy
import re

import torch
from torch import nn

from moeq.quant_core.memory import return_freed_memory
from moeq.quant_core.streaming.skeleton import LayerSource, SkeletonModel

EXPERT_INDEX = re.compile(r"\.experts\.(\d+)\.")
FULL_COUNT = "moeq_num_experts"


def expert_of(name: str) -> int | None:
    m = EXPERT_INDEX.search(name)
    return None if m is None else int(m.group(1))


def fused_names(sk: SkeletonModel, i: int, names: list[str]) -> list[str]:
    """Layer i's routed experts tensors among `names` that hold every expert (fused, [experts, ...]):
    those transformers' key conversion loads into the experts module (gpt-oss' and Llama 4's
    `experts.gate_up_proj`, Granite's `input_linear.weight`), one tensor per expert excepted."""
    from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

    mapping = copy.deepcopy(sk.weight_mapping or [])  # renamings keep state between keys
    renamings = [t for t in mapping if isinstance(t, WeightRenaming)]
    converters = [t for t in mapping if isinstance(t, WeightConverter)]
    spec = sk.moe.spec
    target = re.compile(rf"(?:^|\.)layers\.{i}\.{re.escape(spec.mlp)}\.{re.escape(spec.experts)}\.")
    return [n for n in names
            if expert_of(n) is None and target.search(rename_source_key(n, renamings, converters)[0])]


def chunk_unavailable_reason(sk: SkeletonModel, i: int, source: LayerSource | None = None) -> str | None:
    """None when layer i's routed experts can be loaded a chunk at a time; else why not."""
    source = source or sk.source
    block = sk.moe.blocks.get(i)
    if block is None:
        return "dense layer"
    if sk.moe.spec.expert_call not in ("routed", "scaled_input"):
        return f"{sk.moe.spec.expert_call!r} expert calls"
    if not hasattr(block.experts.module, "num_experts"):
        return f"{type(block.experts.module).__name__} has no num_experts"
    n = full_count(block.experts.module)
    found, fused = {expert_of(x) for x in source.layers[i]} - {None}, fused_names(sk, i, source.layers[i])
    if found and fused:
        return "experts are stored partly one tensor per expert, partly fused"
    if found and found != set(range(n)):
        return f"experts are stored one tensor per expert for {len(found)} of the {n} experts only"
    if not fused and not found:
        return "experts are stored neither one tensor per expert nor fused along the experts dimension"
    for name in fused:
        shape = source.ckpt.entries[name].shape
        if not shape or shape[0] != n:
            return f"fused experts tensor {name} has shape {list(shape)}, not [{n}, ...]"
    return None


def _experts_key(sk: SkeletonModel, i: int) -> str:
    return f"{sk.layers_path}.{i}.{sk.moe.spec.mlp}.{sk.moe.spec.experts}"


@torch.no_grad()
def load_layer_shell(sk: SkeletonModel, i: int, source: LayerSource | None = None,
                     device: torch.device | None = None) -> nn.Module:
    """Layer i with everything but its routed experts loaded (those stay on meta)."""
    source = source or sk.source
    experts = _experts_key(sk, i) + "."
    fused = set(fused_names(sk, i, source.layers[i]))  # these, like the per-expert ones, come by chunks
    names = [n for n in source.layers[i] if expert_of(n) is None and n not in fused]
    keys = {k for k in sk._layer_keys(i) if not k.startswith(experts)}
    sk._load(source.read(names), keys, f"decoder layer {i} (without its routed experts)")
    layer = sk.moe.layers[i]
    if device is not None and device.type != "cpu":
        block, name = sk.moe.blocks[i].block, sk.moe.spec.experts
        experts = getattr(block, name)
        setattr(block, name, nn.Identity())  # meta tensors cannot be moved; the experts come by chunks
        try:
            layer.to(device)
        finally:
            setattr(block, name, experts)
    sk.loaded.add(i)
    return layer


def full_count(module: nn.Module) -> int:
    """The number of routed experts of the layer (the module's count before any chunk was loaded)."""
    if not hasattr(module, FULL_COUNT):
        setattr(module, FULL_COUNT, int(module.num_experts))
    return getattr(module, FULL_COUNT)


def _resize(module: nn.Module, n: int) -> None:
    """The module's per-expert parameters as empty meta tensors for `n` experts (same dtype)."""
    for name, p in list(module.named_parameters(recurse=False)):
        if p.dim() and p.shape[0] == module.num_experts:
            setattr(module, name, nn.Parameter(torch.empty(n, *p.shape[1:], dtype=p.dtype, device="meta"),
                                               requires_grad=False))
    module.num_experts = n


@torch.no_grad()
def load_experts(sk: SkeletonModel, i: int, e0: int, e1: int, source: LayerSource | None = None,
                 device: torch.device | None = None) -> nn.Module:
    """Give layer i's experts module exactly experts [e0, e1) (renumbered 0..e1-e0-1) and return it:
    per-expert tensors by their names, fused ones by their rows e0..e1-1."""
    source = source or sk.source
    module = sk.moe.blocks[i].experts.module
    n, c = full_count(module), e1 - e0
    if not 0 <= e0 < e1 <= n:
        raise ValueError(f"expert chunk {e0}-{e1 - 1} outside layer {i}'s {n} experts")
    _resize(module, c)
    names = [x for x in source.layers[i] if (e := expert_of(x)) is not None and e0 <= e < e1]
    tensors = {EXPERT_INDEX.sub(lambda m: f".experts.{int(m.group(1)) - e0}.", k, count=1): v
               for k, v in source.read(names).items()}
    tensors.update(source.read(fused_names(sk, i, source.layers[i]), rows=(e0, e1)))
    prefix = _experts_key(sk, i) + "."
    sk._load(tensors, {prefix + k for k, _ in module.named_parameters()}, f"experts {e0}-{e1 - 1} of layer {i}")
    del tensors
    if hasattr(module, "first_expert"):  # QuantExperts: per-expert transforms are numbered in the layer
        module.first_expert = e0
    if device is not None and device.type != "cpu":
        module.to(device)
    return module


@torch.no_grad()
def release_experts(sk: SkeletonModel, i: int) -> None:
    """Layer i's experts module back on meta at its full size."""
    module = sk.moe.blocks[i].experts.module
    n = full_count(module)
    _resize(module, n)
    if hasattr(module, "first_expert"):
        module.first_expert = 0
    return_freed_memory()
