"""Evaluation against the full-precision model."""
