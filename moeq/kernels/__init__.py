"""Triton kernels, one per file, each with a shape-checked wrapper and a pure-torch `_ref`."""
