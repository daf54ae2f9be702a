"""Kernel tests run the Triton kernels on CPU tensors under the Triton interpreter, with the GPU's tensor-core
operand rounding emulated (tests/kernels/hw_numerics.py) so that they fail where the hardware would. A run that
selects the GPU tests on a machine with CUDA (`pytest -m gpu tests/kernels`) compiles the kernels for real instead."""

import os

import pytest


def pytest_configure(config):
    import torch

    expr = config.getoption("markexpr") or ""
    device_run = torch.cuda.is_available() and "gpu" in expr.replace("not gpu", "")
    if not device_run:  # before any kernel module is imported: @triton.jit decides at decoration time
        os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def hardware_operand_rounding(monkeypatch):
    from triton.runtime import interpreter

    from tests.kernels import hw_numerics

    monkeypatch.setattr(interpreter.InterpreterBuilder, "create_dot", hw_numerics.hardware_dot)
    monkeypatch.setattr(interpreter.InterpreterBuilder, "cast_impl", hw_numerics.exact_cast)
    yield
