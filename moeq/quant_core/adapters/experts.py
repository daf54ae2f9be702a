"""Routed experts of one MoE block as weight views [expert, out, in] into the model's own fused 3-D
parameters (transformers' standard experts), so that any in-place write lands in the model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from moeq.contract.errors import ModelError


class ExpertGroup:
    """The routed experts of one MoE block (fused 3-D parameters, as in transformers 5)."""

    def __init__(self, module: nn.Module, transposed: bool | None = None) -> None:
        if not hasattr(module, "gate_up_proj") or not hasattr(module, "down_proj"):
            raise ModelError(f"{type(module).__name__}: expected fused gate_up_proj/down_proj experts")
        self.module = module
        self.transposed = bool(getattr(module, "is_transposed", False)) if transposed is None else transposed
        self.concatenated = bool(getattr(module, "is_concatenated", True))
        self.has_bias = bool(getattr(module, "has_bias", False))
        self.names = ("gate_up_proj", "down_proj")  # the records' keys under the module

    @property
    def num_experts(self) -> int:
        return int(self.module.gate_up_proj.shape[0])

    def gate_up(self) -> torch.Tensor:
        """[n, 2I, d] view of the gate/up weights (out × in)."""
        w = self.module.gate_up_proj.data
        return w.transpose(1, 2) if self.transposed else w

    def down(self) -> torch.Tensor:
        """[n, d, I] view of the down weights (out × in)."""
        w = self.module.down_proj.data
        return w.transpose(1, 2) if self.transposed else w

    def bias(self, which: str) -> torch.Tensor | None:
        if not self.has_bias:
            return None
        return getattr(self.module, f"{which}_bias").data

    @property
    def hidden_size(self) -> int:
        return int(self.gate_up().shape[2])

    @property
    def intermediate_size(self) -> int:
        return int(self.down().shape[2])

    def up_rows(self) -> torch.Tensor:
        """Row indices of the 'up' half inside gate_up (concatenated or interleaved layout)."""
        i = self.intermediate_size
        return torch.arange(i, 2 * i) if self.concatenated else torch.arange(1, 2 * i, 2)

    def apply_gate(self, gate_up_out: torch.Tensor) -> torch.Tensor:
        """act(gate)·up with the family's own gating (transformers' `_apply_gate`)."""
        fn = getattr(self.module, "_apply_gate", None)
        if fn is not None:
            return fn(gate_up_out)
        gate, up = gate_up_out.chunk(2, dim=-1)
        return self.module.act_fn(gate) * up

    def intermediate(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """Input of expert e's down projection for tokens `x` (routed to e)."""
        h = F.linear(x, self.gate_up()[e].to(x.dtype), None if not self.has_bias else self.bias("gate_up_proj")[e])
        return self.apply_gate(h)

    def expert_output(self, e: int, x: torch.Tensor) -> torch.Tensor:
        a = self.intermediate(e, x)
        b = None if not self.has_bias else self.bias("down_proj")[e]
        return F.linear(a, self.down()[e].to(a.dtype), b)
