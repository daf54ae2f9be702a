"""Offline Hadamard rotation of the residual stream (QuaRot-style), driven by the family spec.

1. Fold every RMSNorm's scale into the linears that read its output (norm weights become 1).
2. With an orthogonal Q: readers of the residual stream W ← W·Q (attention inputs, router, experts'
   gate/up, shared experts, dense MLP inputs, lm_head), writers W ← Qᵀ·W (attention output,
   experts' down, shared-expert and dense down), embeddings E ← E·Q. The FP function is unchanged because
   RMSNorm without scale commutes with Q. The router is rotated like the experts.
See docs/methods.md "Hadamard / QuaRot rotation".
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from moeq.quant_core.adapters.model import MoEModel, get_path
from moeq.contract.errors import RecipeError
from moeq.quant_core.functional.hadamard import random_hadamard
from moeq.contract.techniques import RotationConfig

log = logging.getLogger(__name__)


def _readers(moe: MoEModel, i: int, post_attn: bool) -> list[torch.Tensor]:
    """Weight tensors (views, [..., out, d]) that read norm i's output."""
    if not post_attn:
        return [m.weight.data for m in moe.attn_inputs(i).values()]
    block = moe.blocks.get(i)
    mlp = get_path(moe.layers[i], moe.spec.mlp)
    if block is None:
        return [get_path(mlp, n).weight.data for n in moe.spec.mlp_inputs if get_path(mlp, n) is not None]
    out = [block.router.weight.data, block.experts.gate_up()]
    if block.shared is not None:
        out += [get_path(block.shared, n).weight.data for n in moe.spec.mlp_inputs]
    if block.shared_gate is not None:
        out.append(block.shared_gate.weight.data)
    return out


def _writers(moe: MoEModel, i: int) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """(weight view [..., d, in], bias [..., d] or None) of modules adding into the residual."""
    o = get_path(moe.layers[i], moe.spec.attn_output)
    out = [(o.weight.data, None if o.bias is None else o.bias.data)]
    block = moe.blocks.get(i)
    if block is None:
        down = get_path(get_path(moe.layers[i], moe.spec.mlp), moe.spec.mlp_output)
        out.append((down.weight.data, None if down.bias is None else down.bias.data))
    else:
        out.append((block.experts.down(), block.experts.bias("down_proj")))
        if block.shared is not None:
            down = get_path(block.shared, moe.spec.mlp_output)
            out.append((down.weight.data, None if down.bias is None else down.bias.data))
    return out


def _fold_norm(norm: nn.Module, readers: list[torch.Tensor]) -> None:
    if getattr(norm, "bias", None) is not None:
        raise RecipeError("techniques", f"rotation needs RMSNorm without bias; {type(norm).__name__} has a bias")
    g = norm.weight.data.double()
    for w in readers:
        w.copy_((w.double() * g).to(w.dtype))
    norm.weight.data.fill_(1.0)


def _untie(model: nn.Module, moe: MoEModel) -> None:
    head, embed = moe.lm_head(), moe.embed()
    if head.weight is embed.weight or head.weight.data_ptr() == embed.weight.data_ptr():
        head.weight = nn.Parameter(embed.weight.data.clone(), requires_grad=False)
        model.config.tie_word_embeddings = False


@torch.no_grad()
def fold_norms(moe: MoEModel) -> None:
    """Fold every RMSNorm's scale into the linears reading it (norm weights become 1); function unchanged
    (the lm_head must not share the embedding's tensor: see `_untie`)."""
    for i in range(len(moe.layers)):
        _fold_norm(moe.input_norm(i), _readers(moe, i, post_attn=False))
        _fold_norm(moe.post_attn_norm(i), _readers(moe, i, post_attn=True))
    _fold_norm(moe.final_norm(), [moe.lm_head().weight.data])


@torch.no_grad()
def rotate_model(moe: MoEModel, cfg: RotationConfig) -> dict:
    """Fold norms and rotate the residual stream in place; returns diagnostics."""
    if not moe.spec.rotation:
        raise RecipeError("techniques", f"family {moe.spec.name} does not support rotation")
    _untie(moe.model, moe)
    fold_norms(moe)
    d = moe.config.hidden_size
    Q, is_hadamard = random_hadamard(d, cfg.seed)
    if not is_hadamard:
        log.warning("no Hadamard construction for d=%d; using a random orthogonal rotation", d)

    def right(w: torch.Tensor) -> None:  # readers: W ← W·Q
        w.copy_((w.double() @ Q).to(w.dtype))

    embed = moe.embed().weight.data
    right(embed)
    right(moe.lm_head().weight.data)
    for i in range(len(moe.layers)):
        for w in _readers(moe, i, post_attn=False) + _readers(moe, i, post_attn=True):
            right(w)
        for w, b in _writers(moe, i):  # writers: W ← Qᵀ·W, bias ← Qᵀ·b
            w.copy_((Q.T @ w.double()).to(w.dtype))
            if b is not None:
                b.copy_((b.double() @ Q).to(b.dtype))
    return {"dim": d, "hadamard": is_hadamard, "seed": cfg.seed}
