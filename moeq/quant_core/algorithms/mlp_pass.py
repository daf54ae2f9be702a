"""Reuse the attention half of a decoder layer's calibration pass when making the next layer's inputs.

Sequential quantization runs each layer's attention three times over the calibration batches: for
the attention linears' inputs, for the MLP input (under the quantized attention), and inside the
full layer pass that makes the next layer's inputs. When nothing between the last two touched the
attention path, the third repeats the second. `capture_mlp_pass` keeps, per batch, the residual
stream entering the post-attention norm beside the MLP input; `next_inputs` then makes the next
layer's inputs as residual + mlp(MLP input), the pre-norm residual form of every supported family.

It trusts that form only after checking it: the first batch also runs through the whole layer, and
unless both give the same tensor bit for bit, every batch runs through the whole layer as before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from moeq.quant_core.adapters.model import get_path
from moeq.quant_core.algorithms.capture import LayerBatch, _layer_out, _run_until_stop, _Stop, run_layer

log = logging.getLogger(__name__)


@dataclass
class MlpPass:
    x: torch.Tensor  # [T, d] the MLP input of every batch, flattened in batch order
    residuals: list[torch.Tensor]  # per batch [B, S, d]: the residual stream entering the post-attention norm
    shapes: list[torch.Size]  # per batch: the MLP input's shape

    def batch_input(self, j: int) -> torch.Tensor:
        start = sum(s.numel() // s[-1] for s in self.shapes[:j])
        return self.x[start:start + self.shapes[j].numel() // self.shapes[j][-1]].reshape(self.shapes[j])


@torch.no_grad()
def capture_mlp_pass(layer: nn.Module, norm_path: str, mlp_path: str, batches: list[LayerBatch]) -> MlpPass:
    """Run `layer` on every batch up to its MLP; keep the MLP input and the residual before the norm."""
    residuals: list[torch.Tensor] = []
    grabbed: list[torch.Tensor] = []

    def on_norm(mod, args):
        residuals.append(args[0].detach())

    def on_mlp(mod, args, kwargs):
        grabbed.append((args[0] if args else next(iter(kwargs.values()))).detach())
        raise _Stop

    handles = [get_path(layer, norm_path).register_forward_pre_hook(on_norm),
               get_path(layer, mlp_path).register_forward_pre_hook(on_mlp, with_kwargs=True)]
    try:
        _run_until_stop(layer, batches)
    finally:
        for h in handles:
            h.remove()
    if len(residuals) != len(grabbed):  # the norm is not (only) on the way to the MLP: keep nothing
        residuals = []
    return MlpPass(torch.cat([g.reshape(-1, g.shape[-1]) for g in grabbed]), residuals, [g.shape for g in grabbed])


@torch.no_grad()
def next_inputs(layer: nn.Module, mlp_path: str, mlp_pass: MlpPass | None,
                batches: list[LayerBatch]) -> list[LayerBatch]:
    """The outputs of `layer` for every batch (the next layer's inputs), from `mlp_pass` when it checks out."""
    if mlp_pass is None or not batches or len(mlp_pass.residuals) != len(batches):
        return run_layer(layer, batches)
    mlp = get_path(layer, mlp_path)
    first = run_layer(layer, batches[:1])

    def finish(j: int) -> torch.Tensor:
        residual = mlp_pass.residuals[j]  # some blocks return flattened tokens (Llama 4): view them as the residual
        return residual + _layer_out(mlp(mlp_pass.batch_input(j))).reshape(residual.shape)

    if not torch.equal(first[0].hidden, finish(0)):
        log.info("layer output is not residual + mlp(input) here; running the whole layer on every batch")
        return first + run_layer(layer, batches[1:])
    return first + [b.next(finish(j)) for j, b in enumerate(batches) if j > 0]
