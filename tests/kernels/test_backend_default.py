"""The safe default: MOEQ_KERNELS=auto runs a Triton kernel on CUDA only for a shape class that a recorded GPU
benchmark (benchmarks/RESULTS.md, device and date) shows winning; "triton" opts in. CUDA is faked by passing a
CUDA device object (no CUDA runtime is touched) and the proven table is injected as a parameter."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from moeq.kernels import backend
from moeq.kernels.backend import PROVEN, ProvenShape, may_use_kernels, resolve_backend
from moeq.kernels.configs import shape_class

CUDA = torch.device("cuda")
DECODE = shape_class(1, 4096, 14336, 8, 2)
PREFILL = shape_class(2048, 4096, 14336, 8, 2)
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "RESULTS.md"


def test_auto_never_picks_an_unproven_kernel_on_cuda():
    assert resolve_backend("auto", CUDA, DECODE) == "torch"
    assert resolve_backend("auto", CUDA, PREFILL) == "torch"
    assert resolve_backend("auto", CUDA) == "torch"  # kernels without a shape class (act quant, packing)
    assert not may_use_kernels("auto", CUDA)  # so no packed copy is even built


def test_auto_picks_the_kernel_only_for_the_proven_shape_class():
    proven = (ProvenShape(DECODE, "NVIDIA H100 80GB HBM3", "2027-01-01", 2.7),
              ProvenShape(PREFILL, "NVIDIA H100 80GB HBM3", "2027-01-01", 0.9))  # recorded but slower
    assert resolve_backend("auto", CUDA, DECODE, proven) == "triton"
    assert resolve_backend("auto", CUDA, PREFILL, proven) == "torch"
    assert resolve_backend("auto", CUDA, shape_class(1, 2048, 768, 128, 8), proven) == "torch"
    assert resolve_backend("auto", torch.device("cpu"), DECODE, proven) == "torch"
    assert may_use_kernels("auto", CUDA, proven)


def test_explicit_choices():
    assert resolve_backend("triton", CUDA, DECODE) == "triton"  # opt-in, proven or not
    assert resolve_backend("torch", CUDA, DECODE, (ProvenShape(DECODE, "x", "2027-01-01", 3.0),)) == "torch"
    assert resolve_backend("triton", torch.device("cpu")) == "triton"  # the interpreter is on in these tests
    with pytest.raises(ValueError, match="must be one of"):
        resolve_backend("cuda-magic", CUDA)


def test_triton_on_cpu_without_the_interpreter_is_refused(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        resolve_backend("triton", torch.device("cpu"))


def test_every_proven_entry_is_recorded_in_results_md():
    """The table may only hold what RESULTS.md shows: the shape class with the same device and date."""
    text = RESULTS.read_text()
    for p in PROVEN:
        assert p.speedup > 1
        assert any(p.shape_class in line and p.device in line and p.date in line for line in text.splitlines()), p
    assert re.search(r"no GPU", text[text.find("## GPU / kernels"):], re.IGNORECASE) or PROVEN


def test_module_reads_no_environment_for_the_decision(monkeypatch):
    monkeypatch.setenv("MOEQ_KERNELS", "triton")  # the setting is passed down, never read here
    assert backend.resolve_backend("auto", CUDA, DECODE) == "torch"
