"""Model-family adapters: the runtime view over a loaded model (`quant_core.adapters.model`,
imports torch). The torch-free family descriptions live in `spec.family_spec`, `spec.families`
and `spec.describe`.
"""
