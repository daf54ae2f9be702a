"""The one helper through which every user- or db-supplied string reaches HTML."""

from __future__ import annotations

import html


def h(value: object) -> str:
    """Escape `value` (any object, via str) for HTML text and attribute contexts."""
    return html.escape("" if value is None else str(value), quote=True)
