"""Kernel tests run the Triton kernels on CPU tensors under the Triton interpreter."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
