"""Numeric core of moeq: adapters, calibration, transforms, quantizers, evaluation.

Importing this package is cheap and torch-free; submodules that need torch import it themselves,
so the web app can validate recipes and describe models without loading torch.
"""

__version__ = "0.1.0"
