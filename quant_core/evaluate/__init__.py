"""Evaluation against the full-precision model (DESIGN.md §4.4)."""
