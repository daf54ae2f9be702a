"""Numeric core of moeq: adapters, calibration, transforms, quantizers, evaluation.

Importing this package is cheap and torch-free; submodules that need torch import it themselves.
Callers outside the numeric core (`moeq/jobs/`) use only `moeq.quant_core.api`; the torch-free contract lives
in `spec` (docs/architecture.md).
"""

from moeq.contract import __version__

__all__ = ["__version__"]
