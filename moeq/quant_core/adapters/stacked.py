"""Routed experts kept as separate per-expert weight stacks on the MoE block (JetMoE's parallel
experts), and the dispatch of a gating module that hands back its tokens sorted by expert.

JetMoE's block holds `input_linear.weight` [n, 2I, d] (gate then up, concatenated) and
`output_linear.weight` [n, d, I]; its gating module returns (sorted (token, slot) positions, token ids,
gates, tokens per expert, logits) and the block runs the stacks itself. The views below are the
model's own tensors, so the quantizers write straight into the model.
"""

from __future__ import annotations

import torch
from torch import nn

from moeq.contract.errors import ModelError
from moeq.quant_core.adapters.experts import ExpertGroup
from moeq.quant_core.adapters.paths import get_path


def _weight(block: nn.Module, path: str) -> torch.Tensor:
    module_path, _, name = path.rpartition(".")
    owner = get_path(block, module_path) if module_path else block
    w = getattr(owner, name, None) if owner is not None else None
    if not isinstance(w, nn.Parameter) or w.dim() != 3:
        raise ModelError(f"{type(block).__name__}: no [experts, out, in] weight stack at {path}")
    return w


class StackedExperts(ExpertGroup):
    """`ExpertGroup` over the block's two weight stacks (gate/up concatenated, no biases)."""

    def __init__(self, block: nn.Module, stacks: tuple[str, str]) -> None:
        self.module = block
        self.names = stacks  # the records' keys under the block
        self.transposed, self.concatenated, self.has_bias = False, True, False
        for p in stacks:
            _weight(block, p)
        if getattr(block, "activation", None) is None:
            raise ModelError(f"{type(block).__name__}: no activation for its parallel experts")

    @property
    def num_experts(self) -> int:
        return int(self.gate_up().shape[0])

    def gate_up(self) -> torch.Tensor:
        """[n, 2I, d] (read on each call: a streamed layer's parameters are replaced when it is loaded)."""
        return _weight(self.module, self.names[0]).data

    def down(self) -> torch.Tensor:
        return _weight(self.module, self.names[1]).data

    def apply_gate(self, gate_up_out: torch.Tensor) -> torch.Tensor:
        gate, up = gate_up_out.chunk(2, dim=-1)
        return self.module.activation(gate) * up


def sorted_dispatch(output: tuple) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(index [T, k], gate weights [T, k], logits [T, n]) from a sorted gating output
    (sorted (token, slot) positions, token ids, gates, tokens per expert, logits)."""
    positions, _, gates, counts, logits = output[:5]
    counts = torch.as_tensor(counts, device=positions.device)
    experts = torch.repeat_interleave(torch.arange(len(counts), device=positions.device), counts)
    index = torch.empty_like(positions)
    index[positions] = experts
    weights = torch.empty(positions.shape[0], dtype=gates.dtype, device=gates.device)
    weights[positions] = gates
    tokens = logits.shape[0]
    return index.reshape(tokens, -1), weights.reshape(tokens, -1), logits


def stack_expert_inputs(args: tuple) -> list[torch.Tensor]:
    """Per expert, the inputs of one call to a weight-stack module (tokens sorted by expert, counts)."""
    inputs, counts = args[0], args[1]
    return list(inputs.split(list(counts), dim=0))
