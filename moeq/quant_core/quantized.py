"""Records of what was quantized (integer codes + scales per tensor) and bit accounting.

A `QuantState` belongs to one run; the model's weights hold the dequantized grid values and the
records hold the integers, so that saving, bit statistics and the packed kernels agree exactly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import torch

from moeq.quant_core.functional.affine import QuantParams, dequantize

log = logging.getLogger(__name__)

Role = Literal["linear", "experts_gate_up", "experts_down", "router"]
SCALE_BITS = 16


@dataclass
class WeightRecord:
    """Integer form of one weight tensor: [out, in], or [n_experts, out, in] for fused experts."""

    key: str  # parameter name in the model's state dict
    role: Role
    layer: int
    codes: torch.Tensor  # uint8
    params: QuantParams

    def dequant(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize(self.codes, self.params, dtype)

    def per_matrix_bits(self) -> torch.Tensor:
        """Bit width of each [out, in] matrix (one entry, or one per expert)."""
        lead = self.codes.shape[:-2]
        return self.params.bits.expand(lead) if self.params.bits.dim() == 0 else self.params.bits

    def bit_totals(self) -> tuple[float, float, int]:
        """(payload bits, overhead bits for scales and zero points, number of weights)."""
        rows, cols = self.codes.shape[-2:]
        groups_per_matrix = rows * (cols // self.params.group_size)
        bits = self.per_matrix_bits().reshape(-1).double()
        payload = float((bits * rows * cols).sum())
        zero_bits = 0.0 if self.params.symmetric else float(bits.sum()) * groups_per_matrix
        overhead = SCALE_BITS * groups_per_matrix * bits.numel() + zero_bits
        return payload, overhead, int(rows * cols * bits.numel())


@dataclass
class QuantState:
    records: dict[str, WeightRecord] = field(default_factory=dict)
    fallbacks: list[dict] = field(default_factory=list)
    tokens_per_expert: dict[int, list[int]] = field(default_factory=dict)
    expert_error: dict[int, list[float]] = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)
    input_quant: dict[str, dict] = field(default_factory=dict)  # module path → ActQuant fields
    quant_experts: dict[int, dict] = field(default_factory=dict)  # layer → ActQuant fields
    # DuQuant online input transforms: module path → BlockTransform; routed experts use
    # "<experts path>.in" (shared with the router) and "<experts path>.down.<e>"
    transforms: dict = field(default_factory=dict)

    def record_fallback(self, layer: int, expert: int, tokens: int, reason: str, fallback: str) -> None:
        """Record (for the result) and log that an expert was not quantized the way the recipe asked."""
        self.fallbacks.append({"layer": layer, "expert": expert, "tokens": tokens, "reason": reason,
                               "fallback": fallback})
        log.info("layer %d expert %d: %s; fallback %s", layer, expert, reason, fallback)

    def add(self, record: WeightRecord) -> None:
        self.records[record.key] = record

    def bits_summary(self) -> dict:
        """Average bits per weight over every quantized weight (attention, dense/shared MLPs, routed
        experts, a quantized router) and over the routed experts alone, each without and with the
        scale/zero-point overhead."""
        tot = {"all": [0.0, 0.0, 0], "experts": [0.0, 0.0, 0]}
        experts: dict[str, dict[str, int]] = {}
        for rec in self.records.values():
            p, o, n = rec.bit_totals()
            for part in ("all", "experts") if rec.role in ("experts_gate_up", "experts_down") else ("all",):
                t = tot[part]
                t[0], t[1], t[2] = t[0] + p, t[1] + o, t[2] + n
            if rec.role == "experts_gate_up":
                experts[str(rec.layer)] = {str(e): int(b) for e, b in enumerate(rec.per_matrix_bits().tolist())}

        def avg(part: str, overhead: bool) -> float | None:
            p, o, n = tot[part]
            if not n:
                return 16.0 if part == "all" else None
            return (p + o) / n if overhead else p / n
        return {
            "avg_weight_bits": avg("all", False),
            "bits_per_param_with_overhead": avg("all", True),
            "avg_weight_bits_with_overhead": avg("all", True),
            "avg_expert_bits": avg("experts", False),
            "avg_expert_bits_with_overhead": avg("experts", True),
            "quantized_params": tot["all"][2],
            "expert_params": tot["experts"][2],
            "experts": experts,
        }
