"""Which implementation runs: the Triton kernel or the pure-torch reference.

"torch" → reference; "triton" → kernel (on CPU only under the Triton interpreter, TRITON_INTERPRET=1);
"auto" → kernel on CUDA, reference elsewhere. The process-level MOEQ_KERNELS setting is read once at
start-up by the settings module and passed down here as `backend`.
"""

from __future__ import annotations

import os

import torch

BACKENDS = ("auto", "torch", "triton")


def interpreter_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"kernel backend must be one of {BACKENDS}, got {backend!r}")
    device = torch.device(device)
    if backend == "torch":
        return "torch"
    if backend == "auto":
        return "triton" if device.type == "cuda" else "torch"
    if device.type != "cuda" and not interpreter_enabled():
        raise ValueError("MOEQ_KERNELS=triton on a CPU tensor needs the Triton interpreter (TRITON_INTERPRET=1)")
    return "triton"
