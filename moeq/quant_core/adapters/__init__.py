"""Model-family adapters: the runtime view over a loaded model (`moeq.quant_core.adapters.model`,
imports torch). The torch-free family descriptions live in `moeq.contract.family_spec`, `moeq.contract.families`
and `moeq.contract.describe`.
"""
