"""DuQuant transforms installed on a model (docs/methods.md "DuQuant").

Each quantized linear's input gets an online transform T (block rotation → zigzag permutation →
block rotation) fitted on its calibration inputs; the weight becomes T(W) so the FP function is
unchanged. Linears that read the same tensor share one T: q/k/v (the attention inputs), and the
router, the routed experts' gate/up and the shared experts' gate/up (the MoE input). Every other
linear (o_proj, MLA's inner projections, dense and shared-expert down_proj, each routed expert's
down_proj) gets its own. Smoothing, when the recipe has it, runs before (the authors' order).
"""

from __future__ import annotations

import re
from typing import Callable

import torch
from torch import nn

from moeq.quant_core.algorithms.expert_access import WHOLE, ExpertAccess, each_expert, edit_each
from moeq.quant_core.functional.duquant import BlockTransform, fit_transform
from moeq.quant_core.modules import attach_input_transform
from moeq.quant_core.quantized import QuantState
from moeq.contract.techniques import DuQuantConfig

MIN_TOKENS = 8  # an expert with fewer routed calibration tokens is fitted on all tokens (as the authors do)


def subsample(x: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    x = x.reshape(-1, x.shape[-1])
    if x.shape[0] <= n:
        return x
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx]


@torch.no_grad()
def capture_inputs(linears: dict[str, nn.Module], run: Callable[[], None], max_rows: int,
                   seed: int) -> dict[str, torch.Tensor]:
    """The (subsampled, float32, CPU) inputs each linear sees while `run()` executes."""
    got: dict[str, list[torch.Tensor]] = {k: [] for k in linears}
    handles = []
    for key, mod in linears.items():
        def hook(m, args, kwargs, key=key):
            x = args[0] if args else next(iter(kwargs.values()))
            got[key].append(subsample(x.detach().float(), max_rows, seed + len(got[key])).cpu())
        handles.append(mod.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return {k: subsample(torch.cat(v), max_rows, seed) for k, v in got.items() if v}


FOLD_ROWS = 512  # rows of a weight transformed at a time (float64 work copies of this many rows)


def fold(weight: torch.Tensor, t: BlockTransform) -> None:
    """W ← T(W) on the input dimension (the last), in place; works on views of fused experts. Rows
    are independent: they are transformed FOLD_ROWS at a time, so the float64 work copies stay small
    (an expert's gate/up in float64 would be 8 B × its parameters, several times over)."""
    rows = weight.reshape(-1, weight.shape[-1]) if weight.is_contiguous() else None
    if rows is None:  # a transposed view: fold it whole
        weight.copy_(t(weight.double()).to(weight.dtype))
        return
    for r in range(0, rows.shape[0], FOLD_ROWS):
        block = rows[r:r + FOLD_ROWS]
        block.copy_(t(block.double()).to(weight.dtype))


@torch.no_grad()
def install_shared(group: dict[str, nn.Module], x: torch.Tensor, cfg: DuQuantConfig, state: QuantState,
                   handles: list) -> BlockTransform:
    """Fit one transform on `x` for linears that read the same input; fold it and hook each input."""
    t = fit_transform(subsample(x.float(), cfg.max_tokens, cfg.seed).cpu(), cfg.block_size, cfg.rotation_steps,
                      cfg.seed)
    for path, mod in group.items():
        fold(mod.weight.data, t)
        handles.append(attach_input_transform(mod, t))
        state.transforms[path] = t
    return t


@torch.no_grad()
def install_each(linears: dict[str, nn.Module], inputs: dict[str, torch.Tensor], cfg: DuQuantConfig,
                 state: QuantState, handles: list) -> None:
    """A transform per linear, fitted on its own captured input."""
    for path, mod in linears.items():
        if path in inputs:
            install_shared({path: mod}, inputs[path], cfg, state, handles)


@torch.no_grad()
def fold_experts_in(block, t: BlockTransform, access: ExpertAccess = WHOLE) -> None:
    """Fold one input transform into every routed expert's gate/up weights, expert by expert."""
    edit_each(access, block, lambda e, local: fold(block.experts.gate_up()[local], t))


def _fold_each(block, which: str, tfs: list[BlockTransform], access: ExpertAccess) -> None:
    """Fold `tfs[e]` into expert e's gate/up (`which` "gate_up") or down weights."""
    edit_each(access, block, lambda e, local: fold(getattr(block.experts, which)()[local], tfs[e]))


@torch.no_grad()
def expert_down_transforms(block, xs: list[torch.Tensor], x_all: torch.Tensor, cfg: DuQuantConfig,
                           access: ExpertAccess = WHOLE) -> list[BlockTransform]:
    """Per routed expert: a transform for down_proj's input fitted on the expert's own calibration
    tokens `xs[e]` (already in the transformed input basis), folded into its down weights."""
    out: list = [None] * len(xs)

    def fit(e: int, local: int) -> None:
        group = block.experts
        xe = xs[e] if xs[e].shape[0] >= MIN_TOKENS else x_all
        xe = subsample(xe, cfg.max_tokens, cfg.seed + e)
        a = group.intermediate(local, xe.to(group.gate_up().dtype))
        out[e] = fit_transform(a.float().cpu(), cfg.block_size, cfg.rotation_steps, cfg.seed + e)
    each_expert(access, block, fit)
    _fold_each(block, "down", out, access)
    return out


@torch.no_grad()
def expert_input_transforms(block, xs: list[torch.Tensor], x_all: torch.Tensor, cfg: DuQuantConfig,
                            access: ExpertAccess = WHOLE) -> list[BlockTransform]:
    """Per routed expert: a transform for its gate/up input fitted on its own routed calibration
    tokens `xs[e]` (on all tokens `x_all` when it got fewer than MIN_TOKENS, as the authors fall back
    to the router's tokens), folded into its gate/up weights (EAQuant's per-expert transforms)."""
    out = []
    for e, xe in enumerate(xs):
        if xe.shape[0] < MIN_TOKENS:
            xe = x_all
        out.append(fit_transform(subsample(xe.float(), cfg.max_tokens, cfg.seed + e).cpu(), cfg.block_size,
                                 cfg.rotation_steps, cfg.seed + e))
    _fold_each(block, "gate_up", out, access)
    return out


def diagnostics(state: QuantState) -> dict:
    """Which transforms ran: how many, their block sizes, and how many at each site (the module path
    with layer and expert numbers written N), e.g. {"model.layers.N.mlp.experts.in": 2}."""
    sites: dict[str, int] = {}
    for key in state.transforms:
        site = re.sub(r"\.\d+(?=\.|$)", ".N", key)
        sites[site] = sites.get(site, 0) + 1
    return {"transforms": len(state.transforms),
            "blocks": sorted({t.block for t in state.transforms.values() if isinstance(t, BlockTransform)}),
            "sites": dict(sorted(sites.items()))}
