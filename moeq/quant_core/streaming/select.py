"""Whether a run streams its layers from disk: asked for (`RunContext.stream = "on"`), or — on
"auto" — when the source is FP8 block-quantized or its weights would not fit comfortably in the
memory this process may use (the cgroup limit or the host's available memory)."""

from __future__ import annotations

import logging
from pathlib import Path

from moeq.quant_core.context import RunContext
from moeq.quant_core.streaming.host_memory import usable_memory_bytes
from moeq.contract.recipe import Recipe

log = logging.getLogger(__name__)
FIT_FRACTION = 0.5  # stream when the checkpoint exceeds this share of the usable memory


def checkpoint_bytes(model_dir: Path) -> int:
    return sum(p.stat().st_size for p in Path(model_dir).glob("*.safetensors"))


def use_streaming(recipe: Recipe, ctx: RunContext) -> bool:
    if ctx.stream in ("on", "off"):
        return ctx.stream == "on"
    from moeq.contract.describe import read_config
    from moeq.quant_core.model_io import resolve_model

    path = resolve_model(recipe.model, ctx)
    if (read_config(path).get("quantization_config") or {}).get("quant_method") in ("fp8", "mxfp4"):
        return True  # block-quantized sources are dequantized tensor by tensor by the streamed reader
    usable = usable_memory_bytes()
    size = checkpoint_bytes(path)
    if usable is not None and size > FIT_FRACTION * usable:
        log.info("checkpoint %s (%.1f GB) exceeds %.0f%% of usable memory (%.1f GB): streaming its layers",
                 path, size / 1e9, 100 * FIT_FRACTION, usable / 1e9)
        return True
    return False
