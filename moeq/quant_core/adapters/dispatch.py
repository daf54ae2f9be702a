"""Record, per MoE layer, which experts each token was dispatched to (with gate weights) and the
router logits — at the point where the block hands tokens to its experts, not by recomputing
top-k from logits (bias-corrected or group-limited routers make that wrong).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from moeq.quant_core.adapters.model import MoEModel, expert_call_args
from moeq.quant_core.adapters.stacked import sorted_dispatch


@dataclass
class Dispatch:
    """Flattened tokens of one or more forward calls through one MoE block."""

    index: torch.Tensor  # [T, k] expert ids
    weights: torch.Tensor  # [T, k] gate weights as applied by the block
    logits: torch.Tensor | None  # [T, n] router logits
    inputs: torch.Tensor | None = None  # [T, d] expert inputs (hidden states), when kept
    score: str = "softmax"  # the family's expert scores over the logits ("softmax" | "sigmoid")

    @property
    def num_tokens(self) -> int:
        return int(self.index.shape[0])

    def counts(self, num_experts: int) -> torch.Tensor:
        return torch.bincount(self.index.reshape(-1), minlength=num_experts)

    def select(self, mask: torch.Tensor) -> "Dispatch":
        return Dispatch(self.index[mask], self.weights[mask],
                        None if self.logits is None else self.logits[mask],
                        None if self.inputs is None else self.inputs[mask], self.score)


@dataclass
class _Buffers:
    index: list = field(default_factory=list)
    weights: list = field(default_factory=list)
    logits: list = field(default_factory=list)
    inputs: list = field(default_factory=list)


class DispatchRecorder:
    """Context manager: hooks every MoE block's experts (pre-hook) and router (output hook).

    Usage::

        with DispatchRecorder(moe_model) as rec:
            model(input_ids)
        d = rec.take(layer_idx)   # Dispatch over all recorded tokens
    """

    def __init__(self, moe: MoEModel, layers: list[int] | None = None, keep_inputs: bool = False,
                 device: torch.device | str | None = "cpu") -> None:
        self.moe = moe
        self.layers = list(moe.blocks) if layers is None else list(layers)
        self.keep_inputs = keep_inputs
        self.device = device
        self._buf: dict[int, _Buffers] = {i: _Buffers() for i in self.layers}
        self._handles: list = []

    def _move(self, t: torch.Tensor) -> torch.Tensor:
        t = t.detach()
        return t.to(self.device) if self.device is not None else t

    def _experts_hook(self, layer: int):
        def hook(module, args, kwargs):
            hidden, index, weights = expert_call_args(args, kwargs)
            buf = self._buf[layer]
            buf.index.append(self._move(index))
            buf.weights.append(self._move(weights).float())
            if self.keep_inputs:
                buf.inputs.append(self._move(hidden))
        return hook

    def _router_hook(self, layer: int):
        def hook(module, args, output):
            logits = output[0] if isinstance(output, tuple) else output
            self._buf[layer].logits.append(self._move(logits).float().reshape(-1, logits.shape[-1]))
        return hook

    def _sorted_gating_hook(self, layer: int):
        """Sorted-dispatch blocks (JetMoE) hand their expert stacks sorted tokens: read the gating output."""
        def hook(module, args, output):
            buf = self._buf[layer]
            index, weights, logits = sorted_dispatch(output)
            buf.index.append(self._move(index))
            buf.weights.append(self._move(weights).float())
            buf.logits.append(self._move(logits).float())
            if self.keep_inputs:
                buf.inputs.append(self._move(args[0]))
        return hook

    def _scaled_input_router_hook(self, layer: int):
        """Scaled-input blocks (Llama 4) never hand their experts ids and weights: read them off the router."""
        block = self.moe.blocks[layer]

        def hook(module, args, output):
            buf = self._buf[layer]
            index, weights = block.scaled_input_dispatch(output)
            buf.index.append(self._move(index))
            buf.weights.append(self._move(weights).float())
            buf.logits.append(self._move(output[1]).float())
            if self.keep_inputs:
                buf.inputs.append(self._move(args[0]))
        return hook

    def __enter__(self) -> "DispatchRecorder":
        for i in self.layers:
            block = self.moe.blocks[i]
            if block.spec.expert_call == "scaled_input":
                self._handles.append(block.router.register_forward_hook(self._scaled_input_router_hook(i)))
                continue
            if block.spec.expert_call == "sorted":
                self._handles.append(block.gating().register_forward_hook(self._sorted_gating_hook(i)))
                continue
            self._handles.append(block.experts.module.register_forward_pre_hook(self._experts_hook(i), with_kwargs=True))
            self._handles.append(block.router.register_forward_hook(self._router_hook(i)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def clear(self) -> None:
        self._buf = {i: _Buffers() for i in self.layers}

    def take(self, layer: int) -> Dispatch:
        buf = self._buf[layer]
        if not buf.index:
            raise RuntimeError(f"no tokens were dispatched in layer {layer}")
        return Dispatch(
            index=torch.cat(buf.index), weights=torch.cat(buf.weights),
            logits=torch.cat(buf.logits) if buf.logits else None,
            inputs=torch.cat(buf.inputs) if buf.inputs else None,
            score=self.moe.blocks[layer].routing_rule().score,
        )
