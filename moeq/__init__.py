"""moeq — post-training quantization workbench for Mixture-of-Experts language models.

The one import name this distribution installs. Its layers (docs/architecture.md): `moeq.contract`
(torch-free contract), `moeq.db`, `moeq.app` (CLI + web), `moeq.jobs`, `moeq.quant_core` (torch) and
`moeq.kernels` (Triton). This file imports none of them, so `import moeq` stays cheap.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("moeq")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"
