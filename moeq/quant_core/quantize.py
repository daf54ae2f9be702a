"""Sequential, block-by-block quantization of an MoE model according to a recipe.

For each decoder layer: capture the attention linears' inputs on calibration data, smooth and
quantize attention; capture the MLP input under the *quantized* attention, smooth the MoE side,
set up the router, dispatch calibration tokens with the final router, quantize routed experts
(batched), shared experts and dense MLPs; install activation quantization; then make the next
layer's inputs (from the MLP pass when nothing has touched the attention path since, see
algorithms/mlp_pass.py). Layers not being processed may stay on CPU.

The techniques are not named here: the walk runs the recipe's techniques by stage (moeq.contract.registry
STAGES) — "model" ones once before the walk, "layer" ones through their hooks at each site of every
layer (moeq/quant_core/apply/hooks.py), and the "weights" one as the method every linear is quantized
with. Each technique's apply function comes from its registry line (moeq.quant_core.apply).
"""

from __future__ import annotations

import logging
from dataclasses import asdict

import torch
from torch import nn

from moeq.quant_core.adapters.model import MoEModel, get_path
from moeq.quant_core.algorithms.capture import (LayerBatch, capture_first_layer_inputs, capture_module_input, mean_batch,
                                           collect_linear_inputs)
from moeq.quant_core.algorithms.expert_access import WHOLE, ExpertAccess
from moeq.quant_core.algorithms.experts import RoutedTokens, quantize_routed_experts
from moeq.quant_core.algorithms.mlp_pass import MlpPass, capture_mlp_pass, next_inputs
from moeq.quant_core.algorithms.mlp import quantize_mlp
from moeq.quant_core.algorithms.stacks import quantize_stacks
from moeq.quant_core.algorithms.weights import Scheme, quantize_linear
from moeq.quant_core.apply import apply_function
from moeq.quant_core.apply.hooks import LayerHooks, MoeInput
from moeq.quant_core.context import RunContext
from moeq.kernels.backend import may_use_kernels
from moeq.quant_core.modules import ActQuant, QuantExperts, attach_input_quant, kernel_weights
from moeq.quant_core.quantized import QuantState
from moeq.contract.recipe import Recipe
from moeq.contract.techniques import GptqConfig, RtnConfig, technique_of

log = logging.getLogger(__name__)
REUSE_MAX_BYTES = 1 << 30  # keeping a layer's residual stream costs one more copy of the calibration activations


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
        self.handles: list = []
        self.n_main = 0
        self.stages = {stage: [t for t in recipe.techniques if technique_of(t).stage == stage]
                       for stage in ("model", "layer", "weights")}
        # "weights": the method every linear is quantized with (RTN when the recipe names none)
        quantizer = next(iter(self.stages["weights"]), None) or RtnConfig()
        self.scheme = Scheme(w.group_size, w.symmetric, w.clip_ratio, apply_function(quantizer)(self, quantizer))
        self.other_bits = recipe.allocation.other_bits if recipe.allocation else w.bits
        self.quantize_other = self.quantize_weights and self.other_bits < 16  # other_bits 16: non-expert stays FP
        a = recipe.activations
        self.aq = ActQuant(a.bits, a.clip_ratio, a.symmetric, backend=ctx.kernels)
        self.gptq = isinstance(self.scheme.method, GptqConfig)
        self.use_kernels = self.quantize_weights and may_use_kernels(ctx.kernels, device)
        # "layer": each technique's hooks, called at every site of every decoder layer, in order
        self.hooks: list[LayerHooks] = [apply_function(t)(self, t) for t in self.stages["layer"]]
        self.reuse_attention = False  # run() sets it: keep each layer's MLP pass to make its outputs
        self.mlp_pass: MlpPass | None = None
        self._mean_input: tuple | None = None  # (layer, mean calibration sequence) for the single router search
        # quantizes a block's routed experts, and how layer-stage techniques reach them: a streamed run
        # loading experts by chunks puts its own here
        self.routed_experts_fn = quantize_routed_experts
        self.expert_access: ExpertAccess = WHOLE

    @property
    def layers_path(self) -> str:
        return self.moe.spec.layers

    def run(self, calib_windows: torch.Tensor | None, batch_size: int,
            reserve_windows: torch.Tensor | None = None) -> None:
        for cfg in self.stages["model"]:  # "model": whole-model techniques, once, before the walk
            apply_function(cfg)(self, cfg)
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
        self.reuse_attention = True
        for i, layer in enumerate(self.moe.layers):
            self.ctx.check_cancel()
            self.ctx.progress(f"quantize: layer {i + 1}/{n}", i / n)
            layer.to(self.device)
            self.quantize_layer(i, layer, batches)
            if batches is not None:
                batches = next_inputs(layer, self.moe.spec.mlp, self.mlp_pass, batches)
            self.mlp_pass = None
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
        attn_path = self.moe.token_mixer(i)
        attn = {k: m for k, m in _linears_under(get_path(layer, attn_path), attn_path).items()
                if k not in self.moe.spec.attn_routers}
        hess = {}
        if batches is not None:
            main = batches[:self.n_main]
            stats = None
            if self.gptq or any(h.wants_attention_stats for h in self.hooks):
                stats = collect_linear_inputs(layer, attn, main, want_hessian=self.gptq,
                                              stop_at=self.moe.spec.post_attn_norm)
            for h in self.hooks:
                stats, changed = h.attention(i, layer, attn, main, stats, prefix)
                if changed and self.gptq:  # Hessians of the transformed inputs
                    stats = collect_linear_inputs(layer, attn, main, want_hessian=True,
                                                  stop_at=self.moe.spec.post_attn_norm)
            hess = {k: s.H() for k, s in (stats or {}).items() if s.hessian is not None}
        if self.quantize_other:
            for key, mod in attn.items():
                self.state.add(quantize_linear(mod, f"{prefix}.{key}.weight", i, self.other_bits, self.scheme,
                                               hess.get(key)))
            stacks = self.moe.attn_expert_stacks(i)
            if stacks:  # per-expert weight stacks of the token mixer (JetMoE's attention experts)
                quantize_stacks(layer, stacks, None if batches is None else batches[:self.n_main], self.gptq,
                                self.moe.spec.post_attn_norm, self.other_bits, self.scheme, self.state, prefix, i)
        x = self._capture_mlp_input(layer, batches) if batches is not None else None
        r = self.recipe.router
        self._mean_input = None
        if batches is not None and r.mode == "align" and r.search == "single":
            self._mean_input = (layer, mean_batch(batches[:self.n_main]))  # EAQuant's router search data
        n_main_tokens = sum(b.hidden.shape[0] * b.hidden.shape[1] for b in batches[:self.n_main]) if batches else 0
        block = self.moe.blocks.get(i)
        if block is None:
            self._quantize_dense_mlp(i, layer, None if x is None else x[:n_main_tokens], prefix)
        else:
            self._quantize_moe(i, block, x, n_main_tokens, prefix)
        if self.aq.enabled:
            for key, mod in attn.items():
                self._attach(f"{prefix}.{key}", mod, self.aq)

    def _capture_mlp_input(self, layer: nn.Module, batches: list[LayerBatch]) -> torch.Tensor:
        """The MLP input [T, d] under the quantized attention; kept for the layer's outputs too when
        nothing done after this pass changes the attention path or the post-attention norm (no
        activation quantization, no layer-stage technique such as smoothing or DuQuant)."""
        size = sum(b.hidden.numel() * b.hidden.element_size() for b in batches)
        if not self.reuse_attention or self.aq.enabled or self.hooks or size > REUSE_MAX_BYTES:
            return capture_module_input(layer, self.moe.spec.mlp, batches)
        self.mlp_pass = capture_mlp_pass(layer, self.moe.spec.post_attn_norm, self.moe.spec.mlp, batches)
        return self.mlp_pass.x

    def _quantize_dense_mlp(self, i: int, layer: nn.Module, x: torch.Tensor | None, prefix: str) -> None:
        spec = self.moe.spec
        mlp = getattr(layer, spec.mlp)
        if x is not None:
            for h in self.hooks:
                h.dense_mlp(i, mlp, x, f"{prefix}.{spec.mlp}")
        if self.quantize_other:
            quantize_mlp(mlp, x, spec.mlp_inputs, spec.mlp_output, self.other_bits, self.scheme, self.state,
                         f"{prefix}.{spec.mlp}", i)
        if self.aq.enabled:
            for key, mod in _linears_under(mlp, spec.mlp).items():
                self._attach(f"{prefix}.{key}", mod, self.aq)

    def _quantize_moe(self, i: int, block, x: torch.Tensor | None, n_main: int, prefix: str) -> None:
        spec = self.moe.spec
        x_t, t_in = x, None  # x_t: the MoE input as the router and experts see it (after online transforms)
        x_e, t_router = x, None  # x_e: what the routed experts see, when that is not x_t
        if x is not None:
            site = MoeInput(x=x, x_t=x, n_main=n_main)
            for h in self.hooks:
                h.moe_input(i, block, site, prefix)
            x, x_t, t_in = site.x, site.x_t, site.t_in
            x_e = site.x_experts if site.x_experts is not None else x_t
            t_router = site.t_router if site.t_router is not None else t_in
        from moeq.quant_core.algorithms.router import prepare_router

        router_aq = prepare_router(block, None if x is None else x_t[:n_main], self.recipe.router, self.state,
                                   self.ctx.kernels, self.scheme.method if self.gptq else None,
                                   self._mean_sequence(t_router))
        if router_aq is not None and router_aq.enabled:
            self._attach(f"{prefix}.{spec.mlp}.{spec.router}", block.router, router_aq)
        tokens = None
        down_tf = None
        if x is not None:
            # dispatch by the final (possibly quantized) router; experts calibrate on the transformed input
            tokens = self.routed(block, x, n_main, i, x_e)
            x = x[:n_main]
            for h in self.hooks:
                down_tf = h.experts_down(i, block, tokens, x_e[:n_main], prefix) or down_tf
            for h in self.hooks:
                t_in = h.experts_in(i) or t_in  # per-expert input transforms replace a shared one
        if self.quantize_weights:
            self.routed_experts_fn(block, tokens, self.expert_bits[i], self.scheme, self.state,
                                   f"{prefix}.{spec.experts_path}", down_tf)
            if block.shared is not None and self.quantize_other:
                agq = self.gptq and self.scheme.method.affinity and x is not None
                weights = block.shared_gate_weight(x).reshape(-1) if agq and block.shared_gate is not None else None
                quantize_mlp(block.shared, x, spec.mlp_inputs, spec.mlp_output, self.other_bits, self.scheme,
                             self.state, f"{prefix}.{spec.shared_experts_path}", i, token_weights=weights)
        kernel = None
        chunked = self.expert_access is not WHOLE  # a streamed layer's experts are on disk, by chunks
        if (self.use_kernels and not chunked and spec.expert_call == "routed"
                and QuantExperts.kernel_compatible(block.experts.module)):
            key = f"{prefix}.{spec.experts_path}"
            kernel = kernel_weights(self.state.records[f"{key}.gate_up_proj"], self.state.records[f"{key}.down_proj"])
        if self.aq.enabled or kernel is not None or t_in is not None:
            self.moe.replace_experts(i, QuantExperts(block.experts.module, self.aq, kernel, self.ctx.kernels,
                                                     t_in, down_tf))
            self.state.quant_experts[i] = asdict(self.aq)
            if block.shared is not None:
                for key, mod in _linears_under(block.shared, spec.shared_experts_path).items():
                    self._attach(f"{prefix}.{key}", mod, self.aq)

    def _mean_sequence(self, t_in) -> torch.Tensor | None:
        """The router input [S, d] of the mean calibration sequence under this layer as transformed so far
        (norm-folded smoothing included, the MoE-input transform `t_in` applied), or None."""
        if self._mean_input is None:
            return None
        layer, batch = self._mean_input
        x = capture_module_input(layer, self.moe.spec.mlp, [batch])
        return t_in(x) if t_in is not None else x

    def routed(self, block, x: torch.Tensor, n_main: int, i: int, x_tokens: torch.Tensor | None = None) -> RoutedTokens:
        """Calibration tokens dispatched by the block's current router, balanced when the recipe asks;
        `x_tokens` (default x) is what the experts see — the transformed input under DuQuant."""
        index, weights = block.dispatch(x)
        xs, index, weights = block.expert_inputs(x if x_tokens is None else x_tokens, index, weights)
        tokens = RoutedTokens(xs, index, weights.float())
        balance = self.recipe.calibration.balance
        if balance is not None:
            from moeq.quant_core.algorithms.balance import balance_tokens

            per_token = tokens.x.shape[0] // x.shape[0]  # scaled-input blocks: one row per (token, slot)
            tokens = balance_tokens(tokens, n_main * per_token, block.num_experts, balance, self.state, i,
                                    self.recipe.seed, self.recipe.calibration.seq_len)
        return tokens

    def _attach(self, path: str, module: nn.Module, aq: ActQuant) -> None:
        """Fake-quantize `module`'s input from now on, and record it so a reload does the same."""
        self.handles.append(attach_input_quant(module, aq))
        self.state.input_quant[path] = asdict(aq)
