"""Wiring of the functional math into models: which tensors, which statistics, written back where."""
