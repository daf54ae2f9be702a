"""SmoothQuant and EAQuant expert-aware smoothing, folded into the norms (exact in FP).

Attention side: one factor per channel from the attention input and the attention readers.
MoE side, aggregate="all": SmoothQuant over all tokens and all consumers (router, experts,
shared experts); aggregate="router": the router's factor alone. aggregate="expert" (EAQuant): per expert, factors from the tokens routed to it
and its own gate/up columns, plus the router (all tokens) and shared experts, aggregated by max.
readers="q_up" (DuQuant as released): the weight maxima come from q_proj and the up projections only.
Optional per-expert smoothing of down_proj folds 1/s into the expert's up rows.
Equations and deviations from the authors' code: docs/methods.md ("SmoothQuant", "EAQuant").
"""

from __future__ import annotations

import torch

from moeq.quant_core.adapters.model import MoEBlock, MoEModel, get_path
from moeq.quant_core.algorithms.capture import InputStats
from moeq.quant_core.algorithms.expert_access import WHOLE, ExpertAccess, each_expert, edit_each
from moeq.quant_core.algorithms.experts import RoutedTokens
from moeq.quant_core.functional.smooth import column_absmax, smooth_scales
from moeq.quant_core.quantized import QuantState
from moeq.contract.techniques import SmoothConfig


def _scale_columns(w: torch.Tensor, s: torch.Tensor) -> None:
    w.copy_((w.float() * s).to(w.dtype))


def _summary(s: torch.Tensor) -> dict:
    return {"min": float(s.min()), "max": float(s.max()), "mean": float(s.mean()),
            "log2_spread": float(torch.log2(s.max() / s.min()))}


@torch.no_grad()
def smooth_attention(moe: MoEModel, i: int, stats: dict[str, InputStats], cfg: SmoothConfig,
                     state: QuantState) -> dict[str, InputStats]:
    """Smooth the input norm → attention readers; returns the stats transformed to the new inputs."""
    readers = moe.attn_inputs(i)
    keys = [k for k in stats if k in readers]
    if not keys:
        return stats
    sources = list(readers) if cfg.readers == "all" else list(readers)[:1]  # q_proj: the family's first reader
    act = torch.stack([stats[k].absmax for k in keys if k in sources] or
                      [stats[k].absmax for k in keys]).amax(0)
    s = smooth_scales(act, column_absmax(*[readers[k].weight.data for k in sources]), cfg.alpha)
    norm = moe.input_norm(i)
    norm.weight.data.copy_((norm.weight.data.float() / s).to(norm.weight.dtype))
    for m in readers.values():
        _scale_columns(m.weight.data, s)
    for k in keys:
        st = stats[k]
        st.absmax = st.absmax / s
        if st.hessian is not None:
            st.hessian = st.hessian / s[:, None] / s[None, :]
    state.diagnostics.setdefault("smoothing", {}).setdefault(str(i), {})["attention"] = _summary(s)
    return stats


@torch.no_grad()
def smooth_v_o(moe: MoEModel, i: int, stats: dict[str, InputStats], cfg: SmoothConfig,
               state: QuantState) -> dict[str, InputStats]:
    """o_proj's input smoothed into v_proj's output rows (exact: each value channel feeds one o_proj
    input channel). Skipped, as the authors skip it, when v_proj and o_proj differ in shape (grouped
    KV heads, MLA) or o_proj's input statistics are missing."""
    layer = moe.layers[i]
    o_key = moe.spec.attn_output
    v_key = next((k for k in moe.spec.attn_inputs if k.endswith("v_proj")), None)
    v, o = (get_path(layer, v_key) if v_key else None), get_path(layer, o_key)
    if v is None or o is None or o_key not in stats or v.weight.shape != o.weight.shape:
        return stats
    s = smooth_scales(stats[o_key].absmax, column_absmax(o.weight.data), cfg.alpha)
    v.weight.data.copy_((v.weight.data.float() / s[:, None]).to(v.weight.dtype))
    if v.bias is not None:
        v.bias.data.copy_((v.bias.data.float() / s).to(v.bias.dtype))
    _scale_columns(o.weight.data, s)
    st = stats[o_key]
    st.absmax = st.absmax / s
    if st.hessian is not None:
        st.hessian = st.hessian / s[:, None] / s[None, :]
    state.diagnostics.setdefault("smoothing", {}).setdefault(str(i), {})["v_o"] = _summary(s)
    return stats


def _moe_consumers(block: MoEBlock, spec) -> list[torch.Tensor]:
    """The MoE input's readers other than the routed experts: router, shared experts, shared gate."""
    out = [block.router.weight.data]
    if block.shared is not None:
        out += [get_path(block.shared, n).weight.data for n in spec.mlp_inputs]
    if block.shared_gate is not None:
        out.append(block.shared_gate.weight.data)
    return out


def _shared_inputs(block: MoEBlock, spec, readers: str) -> list[torch.Tensor]:
    """The shared experts' input-projection weights the factor reads: all of them, or up_proj alone
    (the last of the family's MLP input projections)."""
    if block.shared is None:
        return []
    names = spec.mlp_inputs if readers == "all" else spec.mlp_inputs[-1:]
    return [get_path(block.shared, n).weight.data for n in names]


@torch.no_grad()
def expert_column_absmax(block: MoEBlock, readers: str, access: ExpertAccess = WHOLE) -> torch.Tensor:
    """[n, d]: per routed expert, the column maxima |W| of its gate/up rows (its up rows alone for
    readers="q_up"), read a chunk of experts at a time through `access`."""
    out = [None] * access.count(block)

    def one(e: int, local: int) -> None:
        gu = block.experts.gate_up()[local]
        out[e] = column_absmax(gu[block.experts.up_rows()] if readers == "q_up" else gu)
    each_expert(access, block, one)
    return torch.stack(out)


def _factor_weights(block: MoEBlock, spec, readers: str, experts: torch.Tensor) -> list[torch.Tensor]:
    """aggregate="all": the weights whose column maxima enter the shared factor (`experts`: the
    routed experts' per-expert column maxima, whose own maximum is theirs)."""
    if readers == "all":
        return [block.router.weight.data, experts, *_moe_consumers(block, spec)[1:]]
    return [experts, *_shared_inputs(block, spec, readers)]


@torch.no_grad()
def _expert_inputs(block: MoEBlock, x: torch.Tensor, tokens: RoutedTokens | None, n: int) -> list[torch.Tensor]:
    """Each expert's calibration inputs: its (balanced) token set when given, else all tokens routed to it."""
    if tokens is not None:
        return [tokens.x[t] for t, _ in tokens.per_expert(n)]
    _, _, index = block.router(x)
    return [x[(index == e).any(-1)] for e in range(n)]


def moe_smoothing_factors(block: MoEBlock, x: torch.Tensor, cfg: SmoothConfig, spec,
                          tokens: RoutedTokens | None = None, access: ExpertAccess = WHOLE) -> torch.Tensor:
    """The per-channel factor shared by the post-attention norm and all of its consumers."""
    act_all = x.abs().amax(0).float()
    if cfg.aggregate == "router":
        return smooth_scales(act_all, column_absmax(block.router.weight.data), cfg.alpha)
    experts = expert_column_absmax(block, cfg.readers, access)
    if cfg.aggregate == "all":
        return smooth_scales(act_all, column_absmax(*_factor_weights(block, spec, cfg.readers, experts)), cfg.alpha)
    terms = []
    for e, xe in enumerate(_expert_inputs(block, x, tokens, access.count(block))):
        if xe.shape[0]:
            terms.append(smooth_scales(xe.abs().amax(0), experts[e], cfg.alpha))
    if cfg.include_router or not terms:
        terms.append(smooth_scales(act_all, column_absmax(block.router.weight.data), cfg.alpha))
    if block.shared is not None:
        terms.append(smooth_scales(act_all, column_absmax(*_shared_inputs(block, spec, cfg.readers)), cfg.alpha))
    return torch.stack(terms).amax(0)


@torch.no_grad()
def smooth_moe(moe: MoEModel, block: MoEBlock, x: torch.Tensor, cfg: SmoothConfig, state: QuantState,
               tokens: RoutedTokens | None = None, access: ExpertAccess = WHOLE) -> torch.Tensor:
    """Fold the MoE-side factor s into the post-attention norm and consumers; returns s (inputs become x/s).
    `tokens` (e.g. EAQuant-balanced sets) supply the per-expert statistics when given; `access` reaches
    the routed experts (all at once, or a streamed run's chunks)."""
    s = moe_smoothing_factors(block, x, cfg, moe.spec, tokens, access)
    norm = moe.post_attn_norm(block.layer_idx)
    norm.weight.data.copy_((norm.weight.data.float() / s).to(norm.weight.dtype))
    for w in _moe_consumers(block, moe.spec):
        _scale_columns(w, s)
    access.edit(block, lambda e0, e1: _scale_columns(block.experts.gate_up(), s))
    diag = {"moe": _summary(s), "aggregate": cfg.aggregate, "readers": cfg.readers}
    if cfg.down_proj:
        scaled = None if tokens is None else RoutedTokens((tokens.x.float() / s).to(tokens.x.dtype), tokens.index,
                                                          tokens.weights, tokens.selection)
        diag["down_proj"] = _smooth_down(block, (x.float() / s).to(x.dtype), cfg, scaled, access)
    state.diagnostics.setdefault("smoothing", {}).setdefault(str(block.layer_idx), {}).update(diag)
    return s


def _smooth_down(block: MoEBlock, x: torch.Tensor, cfg: SmoothConfig, tokens: RoutedTokens | None,
                 access: ExpertAccess) -> dict:
    """Per-expert smoothing of down_proj: s into down's columns, 1/s into the expert's up rows."""
    xs = _expert_inputs(block, x, tokens, access.count(block))
    factors: dict[int, torch.Tensor] = {}

    def measure(e: int, local: int) -> None:
        if xs[e].shape[0]:
            inter = block.experts.intermediate(local, xs[e])
            factors[e] = smooth_scales(inter.abs().amax(0), column_absmax(block.experts.down()[local]), cfg.alpha)
    each_expert(access, block, measure)
    del xs

    def fold_factor(e: int, local: int) -> None:
        if e in factors:
            group, s = block.experts, factors[e]
            up_rows, gu = group.up_rows(), group.gate_up()[local]
            gu[up_rows] = (gu[up_rows].float() / s[:, None]).to(gu.dtype)
            _scale_columns(group.down()[local], s)
    edit_each(access, block, fold_factor)
    spreads = [float(torch.log2(s.max() / s.min())) for s in factors.values()]
    return {"experts_smoothed": len(spreads), "mean_log2_spread": sum(spreads) / max(1, len(spreads))}
