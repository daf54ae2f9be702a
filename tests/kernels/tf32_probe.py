"""The old kernels' mistake in miniature: fp32 operands into tl.dot, which the GPU runs as TF32 unless the dot asks
for "ieee". Used by the emulation test (interpreter) and the static check's negative control (SASS)."""

import triton
import triton.language as tl


@triton.jit
def fp32_operand_gemm(x_ptr, w_ptr, y_ptr, IEEE: tl.constexpr, M: tl.constexpr, N: tl.constexpr, K: tl.constexpr):
    rm, rn, rk = tl.arange(0, M), tl.arange(0, N), tl.arange(0, K)
    x = tl.load(x_ptr + rm[:, None] * K + rk[None, :])
    w = tl.load(w_ptr + rk[:, None] * N + rn[None, :])
    y = tl.dot(x, w, input_precision="ieee") if IEEE else tl.dot(x, w)
    tl.store(y_ptr + rm[:, None] * N + rn[None, :], y)
