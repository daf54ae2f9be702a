"""Builders of the built-in models (trained testbeds, random-init tiny checkpoints); the catalog of
names lives in `moeq.contract.zoo` (torch-free)."""
