"""Which implementation runs: the Triton kernel or the pure-torch reference.

"torch" → reference; "triton" → kernel (on CPU only under the Triton interpreter, TRITON_INTERPRET=1);
"auto" → the kernel only on CUDA *and* only for a shape class that the project's own GPU benchmark, recorded in
benchmarks/RESULTS.md with device and date, shows faster than the torch path (the PROVEN table below, empty until
such a run exists); the reference everywhere else. The process-level MOEQ_KERNELS setting is read once at start-up
by the settings module and passed down here as `backend`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

BACKENDS = ("auto", "torch", "triton")


@dataclass(frozen=True)
class ProvenShape:
    """A kernel shape class that a recorded GPU benchmark showed faster than the torch path."""

    shape_class: str  # moeq.kernels.configs.shape_class(...) key, e.g. "moe:decode:d4096:i14336:e8:k2"
    device: str  # GPU name as recorded in RESULTS.md
    date: str  # ISO date of the RESULTS.md run
    speedup: float  # measured torch time / kernel time (> 1)


# Empty: no GPU run of these kernels is recorded yet (benchmarks/RESULTS.md, "Fused MoE kernels").
PROVEN: tuple[ProvenShape, ...] = ()


def interpreter_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def resolve_backend(backend: str, device: torch.device, shape_class: str | None = None,
                    proven: tuple[ProvenShape, ...] | None = None) -> str:
    """"torch" or "triton" for work of `shape_class` (None: any kernel work) on `device`."""
    if backend not in BACKENDS:
        raise ValueError(f"kernel backend must be one of {BACKENDS}, got {backend!r}")
    device = torch.device(device)
    if backend == "torch":
        return "torch"
    if backend == "auto":
        table = PROVEN if proven is None else proven
        won = shape_class is not None and any(p.shape_class == shape_class and p.speedup > 1 for p in table)
        return "triton" if device.type == "cuda" and won else "torch"
    if device.type != "cuda" and not interpreter_enabled():
        raise ValueError("MOEQ_KERNELS=triton on a CPU tensor needs the Triton interpreter (TRITON_INTERPRET=1)")
    return "triton"


def may_use_kernels(backend: str, device: torch.device, proven: tuple[ProvenShape, ...] | None = None) -> bool:
    """Whether any shape class could run the kernel (so packed weights are worth building)."""
    table = PROVEN if proven is None else proven
    if backend == "auto":
        return torch.device(device).type == "cuda" and len(table) > 0
    return resolve_backend(backend, device) == "triton"
