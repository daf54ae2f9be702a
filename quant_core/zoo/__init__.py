"""Builders of the built-in models (trained testbeds, random-init tiny checkpoints); the catalog of
names lives in `spec.zoo` (torch-free)."""
