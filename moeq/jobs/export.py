"""`moeq export`: hand a saved model to serving engines, through the pipeline's entry point."""

from __future__ import annotations

from pathlib import Path

from moeq.quant_core.api import EXPORT_FORMATS

__all__ = ["EXPORT_FORMATS", "export_saved"]


def export_saved(saved_dir: Path, out_dir: Path, fmt: str = "compressed-tensors") -> None:
    """Write the saved model `saved_dir` to the new folder `out_dir` in `fmt` (see moeq.quant_core.api)."""
    from moeq.quant_core.api import export_saved as export

    export(saved_dir, out_dir, fmt)
