"""Layer stage: DuQuant online per-linear transforms (block rotation → zigzag permutation → block
rotation, fitted on calibration activations, inverse folded into the weights; docs/methods.md) at
every attention linear, dense MLP, the MoE input (shared by the router, the routed and the shared
experts) and each routed expert's down_proj."""

from __future__ import annotations

import torch
from torch import nn

from moeq.quant_core.adapters.model import get_path
from moeq.quant_core.apply.hooks import LayerHooks, MoeInput
from moeq.contract.techniques import DuQuantConfig


def _raise_stop(mod, args):
    from moeq.quant_core.algorithms.capture import _Stop

    raise _Stop


class DuQuantHooks(LayerHooks):
    chunked_experts = True  # experts read and rewritten through the quantizer's expert_access
    def __init__(self, q, cfg: DuQuantConfig) -> None:
        self.q, self.cfg = q, cfg
        self._expert_in: dict[int, list] = {}  # layer → per-expert input transforms (moe_input "expert")

    def attention(self, i, layer, attn, batches, stats, prefix):
        """Transforms at every attention linear: q/k/v share one (same input), others their own."""
        from moeq.quant_core.algorithms.capture import _run_until_stop
        from moeq.quant_core.algorithms.duquant import capture_inputs, install_each, install_shared

        q, cfg = self.q, self.cfg
        stop = get_path(layer, q.moe.spec.post_attn_norm).register_forward_pre_hook(_raise_stop)
        try:
            inputs = capture_inputs(attn, lambda: _run_until_stop(layer, batches), cfg.max_tokens, cfg.seed)
        finally:
            stop.remove()
        shared = [k for k in q.moe.spec.attn_inputs if k in attn and k in inputs]
        if shared:
            install_shared({f"{prefix}.{k}": attn[k] for k in shared}, inputs[shared[0]], cfg, q.state, q.handles)
        rest = {k: m for k, m in attn.items() if k not in shared}
        install_each({f"{prefix}.{k}": m for k, m in rest.items()}, {f"{prefix}.{k}": v for k, v in inputs.items()},
                     cfg, q.state, q.handles)
        return stats, True  # the linears now read transformed inputs: GPTQ needs their Hessians again

    def _mlp(self, mlp: nn.Module, x: torch.Tensor, key_prefix: str, inputs_group: dict[str, nn.Module] | None = None):
        """Transforms of a dense gated MLP (or a shared expert): one for its gate/up input (or joined to
        `inputs_group`, the MoE input's readers), one for its down_proj; returns the input transform."""
        from moeq.quant_core.algorithms.duquant import capture_inputs, install_each, install_shared

        q, cfg = self.q, self.cfg
        spec = q.moe.spec
        down = get_path(mlp, spec.mlp_output)
        got = capture_inputs({"down": down}, lambda: mlp(x), cfg.max_tokens, cfg.seed)
        group = dict(inputs_group or {})
        group.update({f"{key_prefix}.{n}": get_path(mlp, n) for n in spec.mlp_inputs if get_path(mlp, n) is not None})
        t_in = install_shared(group, x, cfg, q.state, q.handles)
        install_each({f"{key_prefix}.{spec.mlp_output}": down}, {f"{key_prefix}.{spec.mlp_output}": got["down"]},
                     cfg, q.state, q.handles)
        return t_in

    def dense_mlp(self, i, mlp, x, prefix) -> None:
        self._mlp(mlp, x, prefix)

    def moe_input(self, i, block, site: MoeInput, prefix) -> None:
        """One transform for the MoE input shared by the router, the routed experts' gate/up and the
        shared experts' gate/up; the shared experts' down_proj gets its own."""
        from moeq.quant_core.algorithms.duquant import fold_experts_in, install_shared

        q = self.q
        spec = q.moe.spec
        x = site.x[:site.n_main]
        experts_path = f"{prefix}.{spec.experts_path}"
        readers = {f"{prefix}.{spec.mlp}.{spec.router}": block.router}
        if self.cfg.moe_input == "expert":  # the router and each shared expert their own; experts: experts_down
            t_router = install_shared(readers, x, self.cfg, q.state, q.handles)
            if block.shared is not None:
                self._mlp(block.shared, x, f"{prefix}.{spec.shared_experts_path}")
            site.x_experts, site.t_router = site.x, t_router
            site.x_t = t_router(site.x)
            return
        if block.shared is not None:
            t_in = self._mlp(block.shared, x, f"{prefix}.{spec.shared_experts_path}", readers)
        else:
            t_in = install_shared(readers, x, self.cfg, q.state, q.handles)
        fold_experts_in(block, t_in, q.expert_access)
        q.state.transforms[f"{experts_path}.in"] = t_in
        site.t_in = t_in
        site.x_t = t_in(site.x)

    def experts_down(self, i, block, tokens, x_t, prefix) -> list:
        """Per-expert down_proj transforms from each expert's (balanced, when asked) calibration tokens."""
        from moeq.quant_core.algorithms.duquant import expert_down_transforms

        q = self.q
        access = q.expert_access
        xs = [tokens.x[t] for t, _ in tokens.per_expert(access.count(block))]
        if self.cfg.moe_input == "expert":  # fit each expert's input transform on its routed tokens first
            from moeq.quant_core.algorithms.duquant import MIN_TOKENS, expert_input_transforms

            ins = expert_input_transforms(block, xs, x_t, self.cfg, access)
            key = f"{prefix}.{q.moe.spec.experts_path}.in"
            q.state.transforms.update({f"{key}.{e}": t for e, t in enumerate(ins)})
            self._expert_in[i] = ins
            xs = [t(xe if xe.shape[0] >= MIN_TOKENS else x_t) for t, xe in zip(ins, xs)]
        tfs = expert_down_transforms(block, xs, x_t, self.cfg, access)
        key = f"{prefix}.{q.moe.spec.experts_path}.down"
        q.state.transforms.update({f"{key}.{e}": t for e, t in enumerate(tfs)})
        return tfs

    def experts_in(self, i) -> list | None:
        return self._expert_in.pop(i, None)


def apply(q, cfg: DuQuantConfig) -> DuQuantHooks:
    return DuQuantHooks(q, cfg)
