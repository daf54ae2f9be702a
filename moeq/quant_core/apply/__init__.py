"""Apply functions of the registered techniques (moeq.contract.techniques), one module per technique.

`apply_function(cfg)` returns the function a config's registry line names; `moeq.quant_core.quantize`
calls it at the technique's stage: "model" → `apply(quantizer, cfg)` once before the layer walk;
"layer" → `apply(quantizer, cfg)` returns the technique's `LayerHooks` (hooks.py), called at each
site of every decoder layer; "weights" → `apply(quantizer, cfg)` returns the weight method the
layer walk quantizes every linear with (docs/adding_a_technique.md).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from moeq.contract.techniques import technique_of


def apply_function(cfg: Any) -> Callable[..., Any]:
    """The apply function of `cfg`'s technique (imported from its "module:function" name)."""
    fn = technique_of(cfg).apply
    if callable(fn):
        return fn
    module, _, name = fn.partition(":")
    return getattr(importlib.import_module(module), name)
