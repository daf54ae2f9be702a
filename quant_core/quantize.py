"""Sequential, block-by-block quantization of an MoE model according to a recipe.

For each decoder layer: capture the attention linears' inputs on calibration data, smooth and
quantize attention; capture the MLP input under the *quantized* attention, smooth the MoE side,
set up the router, dispatch calibration tokens with the final router, quantize routed experts
(batched), shared experts and dense MLPs; install activation quantization; then run the quantized
layer to produce the next layer's inputs. Layers not being processed may stay on CPU.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

import torch
from torch import nn

from quant_core.adapters.model import MoEModel, get_path
from quant_core.algorithms.capture import (LayerBatch, capture_first_layer_inputs, capture_module_input,
                                           collect_linear_inputs, run_layer)
from quant_core.algorithms.experts import RoutedTokens, quantize_routed_experts
from quant_core.algorithms.mlp import quantize_mlp
from quant_core.algorithms.weights import Scheme, quantize_linear
from quant_core.context import RunContext
from kernels.backend import may_use_kernels
from quant_core.modules import ActQuant, QuantExperts, attach_input_quant, kernel_weights
from quant_core.quantized import QuantState
from spec.recipe import Recipe
from spec.techniques import DuQuantConfig, GptqConfig, RotationConfig, RtnConfig, SmoothConfig

log = logging.getLogger(__name__)


def _raise_stop(mod, args):
    from quant_core.algorithms.capture import _Stop

    raise _Stop


def _linears_under(module: nn.Module, prefix: str) -> dict[str, nn.Linear]:
    return {f"{prefix}.{n}" if n else prefix: m for n, m in module.named_modules() if isinstance(m, nn.Linear)}


class ModelQuantizer:
    """Holds one run's settings and state while it walks the layers."""

    def __init__(self, moe: MoEModel, recipe: Recipe, ctx: RunContext, state: QuantState,
                 device: torch.device, expert_bits: dict[int, torch.Tensor]) -> None:
        self.moe = moe
        self.recipe = recipe
        self.ctx = ctx
        self.state = state
        self.device = device
        self.expert_bits = expert_bits
        w = recipe.weights
        self.quantize_weights = w.bits < 16
        self.scheme = Scheme(w.group_size, w.symmetric, w.clip_ratio, recipe.weight_quantizer or RtnConfig())
        self.other_bits = recipe.allocation.other_bits if recipe.allocation else w.bits
        self.quantize_other = self.quantize_weights and self.other_bits < 16  # other_bits 16: non-expert stays FP
        a = recipe.activations
        self.aq = ActQuant(a.bits, a.clip_ratio, a.symmetric, backend=ctx.kernels)
        self.smooth: SmoothConfig | None = recipe.technique(SmoothConfig)
        self.duquant: DuQuantConfig | None = recipe.technique(DuQuantConfig)
        self.gptq = isinstance(self.scheme.method, GptqConfig)
        self.use_kernels = self.quantize_weights and may_use_kernels(ctx.kernels, device)
        self.handles: list = []
        self.n_main = 0

    @property
    def layers_path(self) -> str:
        return self.moe.spec.layers

    def run(self, calib_windows: torch.Tensor | None, batch_size: int,
            reserve_windows: torch.Tensor | None = None) -> None:
        rot = self.recipe.technique(RotationConfig)
        if rot is not None:
            from quant_core.algorithms.rotation import rotate_model

            self.state.diagnostics["rotation"] = rotate_model(self.moe, rot)
        batches = None
        if self.device.type != "cpu":
            self._offload()
        if calib_windows is not None:
            self.ctx.progress("calibrate: capture layer-0 inputs", 0.0)
            batches = capture_first_layer_inputs(self.moe, calib_windows, batch_size, self.device)
            self.n_main = len(batches)
            if reserve_windows is not None and reserve_windows.shape[0]:
                batches += capture_first_layer_inputs(self.moe, reserve_windows, batch_size, self.device)
        n = len(self.moe.layers)
        for i, layer in enumerate(self.moe.layers):
            self.ctx.check_cancel()
            self.ctx.progress(f"quantize: layer {i + 1}/{n}", i / n)
            layer.to(self.device)
            self.quantize_layer(i, layer, batches)
            if batches is not None:
                batches = run_layer(layer, batches)
            if self.device.type != "cpu":
                layer.to("cpu")
        self.ctx.progress("quantize: done", 1.0)

    def _offload(self) -> None:
        """Keep decoder layers on CPU; put the embedding/rotary/mask modules on the device."""
        self.moe.model.to("cpu")
        base_path, _, layers_name = self.layers_path.rpartition(".")
        base = get_path(self.moe.model, base_path) if base_path else self.moe.model
        for name, child in base.named_children():
            if name != layers_name:
                child.to(self.device)

    def quantize_layer(self, i: int, layer: nn.Module, batches: list[LayerBatch] | None) -> None:
        prefix = f"{self.layers_path}.{i}"
        attn_path = self.moe.spec.attn_output.split(".")[0]
        attn = _linears_under(getattr(layer, attn_path), attn_path)
        hess = {}
        if batches is not None and (self.gptq or self.smooth is not None):
            stats = collect_linear_inputs(layer, attn, batches[:self.n_main], want_hessian=self.gptq,
                                          stop_at=self.moe.spec.post_attn_norm)
            if self.smooth is not None and self.smooth.attention:
                from quant_core.algorithms.smoothing import smooth_attention

                stats = smooth_attention(self.moe, i, stats, self.smooth, self.state)
            hess = {k: s.H() for k, s in stats.items() if s.hessian is not None}
        if batches is not None and self.duquant is not None:
            self._duquant_attention(i, layer, attn, batches[:self.n_main], prefix)
            if self.gptq:  # Hessians of the transformed inputs
                stats = collect_linear_inputs(layer, attn, batches[:self.n_main], want_hessian=True,
                                              stop_at=self.moe.spec.post_attn_norm)
                hess = {k: s.H() for k, s in stats.items() if s.hessian is not None}
        if self.quantize_other:
            for key, mod in attn.items():
                self.state.add(quantize_linear(mod, f"{prefix}.{key}.weight", i, self.other_bits, self.scheme,
                                               hess.get(key)))
        x = capture_module_input(layer, self.moe.spec.mlp, batches) if batches is not None else None
        n_main_tokens = sum(b.hidden.shape[0] * b.hidden.shape[1] for b in batches[:self.n_main]) if batches else 0
        block = self.moe.blocks.get(i)
        if block is None:
            self._quantize_dense_mlp(i, layer, None if x is None else x[:n_main_tokens], prefix)
        else:
            self._quantize_moe(i, block, x, n_main_tokens, prefix)
        if self.aq.enabled:
            for key, mod in attn.items():
                self._attach(f"{prefix}.{key}", mod, self.aq)

    def _duquant_attention(self, i: int, layer: nn.Module, attn: dict, batches: list[LayerBatch], prefix: str) -> None:
        """DuQuant transforms at every attention linear: q/k/v share one (same input), others their own."""
        from quant_core.algorithms.capture import _run_until_stop
        from quant_core.algorithms.duquant import capture_inputs, install_each, install_shared

        cfg = self.duquant
        stop = get_path(layer, self.moe.spec.post_attn_norm).register_forward_pre_hook(_raise_stop)
        try:
            inputs = capture_inputs(attn, lambda: _run_until_stop(layer, batches), cfg.max_tokens, cfg.seed)
        finally:
            stop.remove()
        shared = [k for k in self.moe.spec.attn_inputs if k in attn and k in inputs]
        if shared:
            install_shared({f"{prefix}.{k}": attn[k] for k in shared}, inputs[shared[0]], cfg, self.state,
                           self.handles)
        rest = {k: m for k, m in attn.items() if k not in shared}
        install_each({f"{prefix}.{k}": m for k, m in rest.items()}, {f"{prefix}.{k}": v for k, v in inputs.items()},
                     cfg, self.state, self.handles)

    def _duquant_mlp(self, mlp: nn.Module, x: torch.Tensor, key_prefix: str,
                     inputs_group: dict[str, nn.Module] | None = None):
        """Transforms of a dense gated MLP (or a shared expert): one for its gate/up input (or joined to
        `inputs_group`, the MoE input's readers), one for its down_proj; returns the input transform."""
        from quant_core.algorithms.duquant import capture_inputs, install_each, install_shared

        spec, cfg = self.moe.spec, self.duquant
        down = get_path(mlp, spec.mlp_output)
        got = capture_inputs({"down": down}, lambda: mlp(x), cfg.max_tokens, cfg.seed)
        group = dict(inputs_group or {})
        group.update({f"{key_prefix}.{n}": get_path(mlp, n) for n in spec.mlp_inputs if get_path(mlp, n) is not None})
        t_in = install_shared(group, x, cfg, self.state, self.handles)
        install_each({f"{key_prefix}.{spec.mlp_output}": down}, {f"{key_prefix}.{spec.mlp_output}": got["down"]},
                     cfg, self.state, self.handles)
        return t_in

    def _quantize_dense_mlp(self, i: int, layer: nn.Module, x: torch.Tensor | None, prefix: str) -> None:
        spec = self.moe.spec
        mlp = getattr(layer, spec.mlp)
        if self.duquant is not None and x is not None:
            self._duquant_mlp(mlp, x, f"{prefix}.{spec.mlp}")
        if self.quantize_other:
            quantize_mlp(mlp, x, spec.mlp_inputs, spec.mlp_output, self.other_bits, self.scheme, self.state,
                         f"{prefix}.{spec.mlp}", i)
        if self.aq.enabled:
            for key, mod in _linears_under(mlp, spec.mlp).items():
                self._attach(f"{prefix}.{key}", mod, self.aq)

    def _quantize_moe(self, i: int, block, x: torch.Tensor | None, n_main: int, prefix: str) -> None:
        spec = self.moe.spec
        if x is not None and self.smooth is not None:
            from quant_core.algorithms.smoothing import smooth_moe

            # the (balanced) per-expert token sets under the FP router feed the smoothing statistics
            sets = self._routed(block, x, n_main, i) if self.recipe.calibration.balance is not None else None
            s = smooth_moe(self.moe, block, x[:n_main], self.smooth, self.state, sets)
            x = (x.float() / s).to(x.dtype)
        x_t = x  # the MoE input as the router and experts see it (after the DuQuant transform)
        t_in = None
        if x is not None and self.duquant is not None:
            t_in = self._duquant_moe_input(block, x[:n_main], prefix)
            x_t = t_in(x)
        from quant_core.algorithms.router import prepare_router

        router_aq = prepare_router(block, None if x is None else x_t[:n_main], self.recipe.router, self.state,
                                   self.ctx.kernels)
        if router_aq is not None and router_aq.enabled:
            self._attach(f"{prefix}.{spec.mlp}.{spec.router}", block.router, router_aq)
        tokens = None
        down_tf = None
        if x is not None:
            # dispatch by the final (possibly quantized) router; experts calibrate on the transformed input
            tokens = self._routed(block, x, n_main, i, x_t)
            x = x[:n_main]
            if t_in is not None:
                down_tf = self._duquant_expert_down(block, tokens, x_t[:n_main], prefix)
        if self.quantize_weights:
            quantize_routed_experts(block, tokens, self.expert_bits[i], self.scheme, self.state,
                                    f"{prefix}.{spec.mlp}.{spec.experts}", down_tf)
            if block.shared is not None and self.quantize_other:
                agq = self.gptq and self.scheme.method.affinity and x is not None
                weights = block.shared_gate_weight(x).reshape(-1) if agq and block.shared_gate is not None else None
                quantize_mlp(block.shared, x, spec.mlp_inputs, spec.mlp_output, self.other_bits, self.scheme,
                             self.state, f"{prefix}.{spec.mlp}.{spec.shared_experts}", i, token_weights=weights)
        kernel = None
        if self.use_kernels and QuantExperts.kernel_compatible(block.experts.module):
            key = f"{prefix}.{spec.mlp}.{spec.experts}"
            kernel = kernel_weights(self.state.records[f"{key}.gate_up_proj"], self.state.records[f"{key}.down_proj"])
        if self.aq.enabled or kernel is not None or t_in is not None:
            self.moe.replace_experts(i, QuantExperts(block.experts.module, self.aq, kernel, self.ctx.kernels,
                                                     t_in, down_tf))
            self.state.quant_experts[i] = asdict(self.aq)
            if block.shared is not None:
                for key, mod in _linears_under(block.shared, f"{spec.mlp}.{spec.shared_experts}").items():
                    self._attach(f"{prefix}.{key}", mod, self.aq)

    def _duquant_moe_input(self, block, x: torch.Tensor, prefix: str):
        """One transform for the MoE input shared by the router, the routed experts' gate/up and the
        shared experts' gate/up; the shared experts' down_proj gets its own."""
        spec = self.moe.spec
        experts_path = f"{prefix}.{spec.mlp}.{spec.experts}"
        readers = {f"{prefix}.{spec.mlp}.{spec.router}": block.router}
        if block.shared is not None:
            t_in = self._duquant_mlp(block.shared, x, f"{prefix}.{spec.mlp}.{spec.shared_experts}", readers)
        else:
            from quant_core.algorithms.duquant import install_shared

            t_in = install_shared(readers, x, self.duquant, self.state, self.handles)
        from quant_core.algorithms.duquant import fold

        fold(block.experts.gate_up(), t_in)
        self.state.transforms[f"{experts_path}.in"] = t_in
        return t_in

    def _duquant_expert_down(self, block, tokens: RoutedTokens, x_all: torch.Tensor, prefix: str) -> list:
        """Per-expert down_proj transforms from each expert's (balanced, when asked) calibration tokens."""
        from quant_core.algorithms.duquant import expert_down_transforms

        xs = [tokens.x[t] for t, _ in tokens.per_expert(block.num_experts)]
        tfs = expert_down_transforms(block.experts, xs, x_all, self.duquant)
        key = f"{prefix}.{self.moe.spec.mlp}.{self.moe.spec.experts}.down"
        self.state.transforms.update({f"{key}.{e}": t for e, t in enumerate(tfs)})
        return tfs

    def _routed(self, block, x: torch.Tensor, n_main: int, i: int, x_tokens: torch.Tensor | None = None) -> RoutedTokens:
        """Calibration tokens dispatched by the block's current router, balanced when the recipe asks;
        `x_tokens` (default x) is what the experts see — the transformed input under DuQuant."""
        with torch.no_grad():
            _, weights, index = block.router(x)
        tokens = RoutedTokens(x if x_tokens is None else x_tokens, index, weights.float())
        balance = self.recipe.calibration.balance
        if balance is not None:
            from quant_core.algorithms.balance import balance_tokens

            tokens = balance_tokens(tokens, n_main, block.num_experts, balance, self.state, i, self.recipe.seed)
        return tokens

    def _attach(self, path: str, module: nn.Module, aq: ActQuant) -> None:
        """Fake-quantize `module`'s input from now on, and record it so a reload does the same."""
        self.handles.append(attach_input_quant(module, aq))
        self.state.input_quant[path] = asdict(aq)
