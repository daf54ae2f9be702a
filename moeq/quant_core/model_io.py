"""Resolve a model reference (zoo name or local HF directory) safely, and load it."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from moeq.contract.describe import ModelInfo, describe_config, read_config
from moeq.quant_core.context import RunContext
from moeq.contract.errors import ModelError
from moeq.contract.model_ref import resolve_local_path
from moeq.contract.zoo import is_zoo_name

log = logging.getLogger(__name__)


def resolve_model(ref: str, ctx: RunContext) -> Path:
    """Path of the checkpoint for `ref`; builds zoo models on demand; enforces model roots."""
    if not ref:
        raise ModelError("no model given")
    if is_zoo_name(ref):
        from moeq.quant_core.zoo.build import ensure_built

        return ensure_built(ref, ctx.zoo_dir)
    return resolve_local_path(ref, ctx.model_roots)


def check_loadable(path: Path, ctx: RunContext) -> ModelInfo:
    """Describe the checkpoint and refuse remote code unless the operator allowed it; refuse a config
    that claims more than this worker can hold (admission checked it against MOEQ_WORKER_MEMORY_GB; a
    stored or forged run skipped that) before anything is allocated from it."""
    from moeq.contract.checkpoint_check import check_checkpoint_files
    from moeq.contract.model_size import check_fits, model_size
    from moeq.quant_core.streaming.host_memory import usable_memory_bytes

    config = read_config(path)
    if config.get("auto_map") and not ctx.allow_remote_code:
        raise ModelError(f"{path} needs trust_remote_code (custom modeling code); refused — an operator can "
                         "allow it with MOEQ_ALLOW_REMOTE_CODE=1")
    info = describe_config(config)
    checkpoint = check_checkpoint_files(path)
    memory = usable_memory_bytes()
    if memory:
        check_fits(model_size(config), checkpoint, memory, str(path), "this worker's available memory", "")
    return info


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(requested)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {requested!r} requested but CUDA is not available")
    return dev


def load_model(path: Path, ctx: RunContext, dtype: torch.dtype | None = None):
    """Load (model, tokenizer) on CPU, eval mode; verifies every weight is finite."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_loadable(path, ctx)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=ctx.allow_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype or "auto", trust_remote_code=ctx.allow_remote_code, low_cpu_mem_usage=True)
    except Exception as exc:  # noqa: BLE001 — a broken checkpoint: one line, never a raw library error
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ModelError(f"cannot load model from {path}: {type(exc).__name__}: {first}") from None
    model.eval()
    model.requires_grad_(False)
    if hasattr(model, "set_experts_implementation") and pick_device(ctx.device).type == "cpu":
        model.set_experts_implementation("eager")  # grouped_mm is several times slower on CPU for small batches
    for name, param in model.named_parameters():
        if not torch.isfinite(param).all():
            raise ModelError(f"checkpoint {path} has NaN/Inf values in {name}")
    return model, tokenizer
