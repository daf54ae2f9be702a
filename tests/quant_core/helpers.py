"""Test helpers: quantize a tiny model in memory with a recipe (no evaluation)."""

from __future__ import annotations

import torch

from moeq.quant_core.adapters.model import MoEModel
from moeq.quant_core.context import RunContext
from moeq.quant_core.pipeline import quantize_model
from moeq.contract.recipe import parse_recipe
from tests.conftest import load_tiny

SMALL_CALIB = {"source": "random", "samples": 8, "seq_len": 64}


def quantize_tiny(zoo, family: str, recipe: dict, tmp_path, kernels: str = "auto"):
    """(fp model, quantized model, MoEModel view, QuantState) for tiny-<family>."""
    from transformers import AutoTokenizer

    fp = load_tiny(zoo, family)
    q = load_tiny(zoo, family)
    moe = MoEModel(q)
    full = {"model": f"tiny-{family}", "calibration": SMALL_CALIB, **recipe}
    ctx = RunContext(zoo_dir=zoo, cache_dir=tmp_path / "cache", kernels=kernels)
    tok = AutoTokenizer.from_pretrained(zoo / f"tiny-{family}")
    state, _ = quantize_model(moe, tok, parse_recipe(full), ctx, torch.device("cpu"), zoo / f"tiny-{family}")
    return fp, q, moe, state
