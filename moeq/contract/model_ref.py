"""Torch-free resolution of a model reference: zoo name or a local directory inside the allowed roots."""

from __future__ import annotations

import os
from pathlib import Path

from moeq.contract.errors import ModelError


def resolve_local_path(ref: str, model_roots: tuple[Path, ...]) -> Path:
    """Existing, readable directory for `ref`; refuses paths outside `model_roots` (when set)."""
    path = Path(ref).expanduser()
    if model_roots:  # outside the roots: refused before anything about the path is revealed
        try:
            loose = path.resolve()
        except (OSError, RuntimeError, ValueError):
            raise ModelError(f"model path {ref!r} cannot be resolved") from None
        if not any(loose == r or r in loose.parents for r in model_roots):
            roots = ", ".join(str(r) for r in model_roots)
            raise ModelError(f"model path {ref!r} is outside the allowed model roots ({roots})")
    try:
        path = path.resolve(strict=True)
    except PermissionError:
        raise ModelError(f"model path {ref!r} is not readable (a directory on the way is closed to this user)") \
            from None
    except (FileNotFoundError, RuntimeError):
        from moeq.contract.suggest import did_you_mean
        from moeq.contract.zoo import ZOO

        raise ModelError(f"model path {ref!r} does not exist (and is not a zoo name{did_you_mean(ref, ZOO)}; "
                         "see 'moeq zoo list')") from None
    if model_roots and not any(path == r or r in path.parents for r in model_roots):
        roots = ", ".join(str(r) for r in model_roots)
        raise ModelError(f"model path {path} is outside the allowed model roots ({roots})")
    if not path.is_dir():
        raise ModelError(f"model path {path} is not a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise ModelError(f"model directory {path} is not readable")
    return path
