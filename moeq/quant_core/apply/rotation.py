"""Model stage: offline randomized Hadamard rotation of the residual stream (docs/methods.md)."""

from __future__ import annotations

from moeq.contract.techniques import RotationConfig


def apply(q, cfg: RotationConfig) -> None:
    from moeq.quant_core.algorithms.rotation import rotate_model

    q.state.diagnostics["rotation"] = rotate_model(q.moe, cfg)
