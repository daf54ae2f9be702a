"""Dotted attribute paths inside a module tree ('model.layers.0.mlp'), shared by the adapters."""

from __future__ import annotations

from torch import nn


def get_path(root: nn.Module, dotted: str) -> nn.Module | None:
    """Resolve 'a.b.c' attributes from `root`; None when any part is missing or None."""
    obj = root
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj
