"""Kernel tests run the Triton kernels on CPU tensors under the Triton interpreter, with the GPU's tensor-core
operand rounding emulated (tests/kernels/hw_numerics.py) so that they fail where the hardware would."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def hardware_operand_rounding(monkeypatch):
    from triton.runtime import interpreter

    from tests.kernels import hw_numerics

    monkeypatch.setattr(interpreter.InterpreterBuilder, "create_dot", hw_numerics.hardware_dot)
    monkeypatch.setattr(interpreter.InterpreterBuilder, "cast_impl", hw_numerics.exact_cast)
    yield
