"""CPU emulation of the GPU's tensor-core operand rounding for kernels run under the Triton interpreter.

The interpreter computes `tl.dot` with numpy and knows nothing of the hardware: fp32 operands are multiplied
exactly (a GPU runs them as TF32, which keeps 10 of the 23 mantissa bits), and bf16 operands, stored as raw
uint16 bit patterns, are multiplied as integers (and an integer cast to bf16 is stored unconverted). `hardware_dot` decodes bf16/fp16 operands to their exact values,
drops the low 13 mantissa bits of fp32 operands when the dot's input precision is TF32 (as the MMA does; "ieee"
keeps them), and accumulates in fp32 (`exact_cast` makes casts to bf16 round to nearest even, as the GPU's do). The kernel-test conftest installs it for every kernel test, so an
interpreter test fails where the GPU would.
"""

from __future__ import annotations

import numpy as np
import torch
import triton.language as tl
from triton.runtime import interpreter

TF32_DROPPED_BITS = 13  # fp32 has 23 explicit mantissa bits, TF32 10


def exact_values(handle) -> np.ndarray:
    data, dtype = handle.data, handle.dtype.scalar
    if dtype == tl.bfloat16:
        return (data.astype(np.uint32) << 16).view(np.float32)
    return data.astype(np.float32)


def tf32_truncate(x: np.ndarray) -> np.ndarray:
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return (bits & np.uint32(~((1 << TF32_DROPPED_BITS) - 1) & 0xFFFFFFFF)).view(np.float32)


def _is_tf32(input_precision) -> bool:
    return "TF32" in str(input_precision).upper() and "X3" not in str(input_precision).upper()


def hardware_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
    fp8 = any(h.dtype.scalar.primitive_bitwidth == 8 and h.dtype.scalar.is_floating() for h in (a, b))
    if fp8:
        return _ORIGINAL(self, a, b, d, input_precision, max_num_imprecise_acc)
    av, bv = exact_values(a), exact_values(b)
    if a.dtype.scalar == tl.float32 and _is_tf32(input_precision):
        av, bv = tf32_truncate(av), tf32_truncate(bv)
    out = (np.matmul(av.astype(np.float64), bv.astype(np.float64)) + d.data).astype(d.data.dtype)
    return interpreter.TensorHandle(out, d.dtype.scalar)


def exact_cast(self, src, dst_type):
    """Casts to bf16 as the GPU does them: round to nearest even (the interpreter truncates fp32 → bf16 and stores
    an integer cast to bf16 as the integer itself in the uint16 slot)."""
    if dst_type.scalar == tl.bfloat16 and src.dtype.scalar != tl.bfloat16:
        values = exact_values(src) if src.dtype.scalar.is_floating() else src.data.astype(np.float32)
        rounded = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(torch.bfloat16)
        return interpreter.TensorHandle(rounded.view(torch.int16).numpy().view(np.uint16), tl.bfloat16)
    return _ORIGINAL_CAST(self, src, dst_type)


_ORIGINAL = interpreter.InterpreterBuilder.create_dot
_ORIGINAL_CAST = interpreter.InterpreterBuilder.cast_impl
