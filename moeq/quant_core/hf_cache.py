"""The key/value cache across the supported transformers versions (pyproject: >=5.24,<5.26).

transformers renamed the forward keyword `past_key_values` to `cache` and the output attribute
likewise; the old names are still accepted in 5.24–5.25 and go away later. These two helpers take
whichever name the installed version's model has, so both ends of the range work.
"""

from __future__ import annotations

import inspect


def cache_keyword(model) -> str:
    """The forward keyword that passes a cache into `model`."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def cache_of(output):
    """The cache a forward with `use_cache=True` returned."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)
