"""Pure tensor math: (weight, statistics, scheme) → (quantized weight, scales, zeros). No models, no I/O.

Equations, papers and deviations from the authors' code: docs/methods.md.
"""

from moeq.quant_core.functional.routing import RoutingRule, router_alignment_loss

__all__ = ["RoutingRule", "router_alignment_loss"]
