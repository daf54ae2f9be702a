"""Rotation keeps the FP function; save/reload reproduces the quantized logits bit for bit on every
family; corruption and a full disk are reported clearly."""

from __future__ import annotations

import errno
import json

import pytest
import torch

from moeq.quant_core.adapters.model import MoEModel
from moeq.quant_core.algorithms.rotation import rotate_model
from moeq.quant_core.api import run
from moeq.quant_core.context import RunContext
from moeq.contract.errors import ArtifactError
from moeq.quant_core.io.load import check_probe, load_quantized
from moeq.contract.techniques import RotationConfig
from tests.conftest import FAMILIES, load_tiny

TINY_EVAL = {"source": "random", "tasks": [], "ppl_windows": 2, "seq_len": 32}


@pytest.mark.parametrize("family", FAMILIES)
def test_rotation_preserves_fp_logits(tiny_zoo, family):
    model = load_tiny(tiny_zoo, family)
    ids = torch.randint(4, 100, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(ids).logits
        diag = rotate_model(MoEModel(model), RotationConfig(seed=7))
        after = model(ids).logits
    assert diag["hadamard"]
    assert (before - after).abs().max() < 1e-3
    assert not torch.equal(before, after)  # weights really changed


def _saved_run(zoo, family, save_dir, tmp_path, recipe_extra=None):
    recipe = {"model": f"tiny-{family}", "weights": {"bits": 4, "group_size": 16}, "activations": {"bits": 8},
              "router": "quantize", "calibration": {"source": "random", "samples": 4, "seq_len": 32},
              "techniques": ["gptq"], "eval": TINY_EVAL, **(recipe_extra or {})}
    ctx = RunContext(zoo_dir=zoo, cache_dir=tmp_path / "cache", save_dir=save_dir)
    return run(recipe, ctx)


@pytest.mark.parametrize("family", FAMILIES)
def test_save_reload_round_trip_is_bit_exact(tiny_zoo, tmp_path, family):
    from transformers import AutoModelForCausalLM

    save = tmp_path / "saved"
    result = _saved_run(tiny_zoo, family, save, tmp_path)
    assert {a["path"].split("/")[-1] for a in result["artifacts"]} >= {"model.safetensors", "moeq_quant.safetensors"}
    loaded = load_quantized(save)
    assert check_probe(loaded, save)
    # plain transformers (no moeq code) loads the dequantized checkpoint; weights sit on the grid
    plain = AutoModelForCausalLM.from_pretrained(save)
    moe = MoEModel(plain)
    for i, block in moe.blocks.items():
        assert torch.equal(block.experts.gate_up(), loaded.moe.blocks[i].experts.gate_up())


def test_corrupted_file_is_refused(tiny_zoo, tmp_path):
    save = tmp_path / "saved"
    _saved_run(tiny_zoo, "mixtral", save, tmp_path)
    codes = save / "moeq_quant.safetensors"
    data = bytearray(codes.read_bytes())
    data[len(data) // 2] ^= 0xFF
    codes.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="moeq_quant.safetensors does not match its recorded sha256"):
        load_quantized(save)
    (save / "checksums.json").unlink()
    with pytest.raises(ArtifactError, match="no checksums.json"):
        load_quantized(save)


def test_full_disk_while_saving_leaves_nothing_and_says_so(tiny_zoo, tmp_path, monkeypatch):
    import moeq.quant_core.io.save as save_mod

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(save_mod, "save_file", full_disk)
    save = tmp_path / "out" / "model"
    with pytest.raises(ArtifactError, match="disk full"):
        _saved_run(tiny_zoo, "mixtral", save, tmp_path)
    assert not save.exists()
    assert [p for p in (tmp_path / "out").iterdir()] == []


def test_saved_metadata_records_recipe_and_runtime(tiny_zoo, tmp_path):
    save = tmp_path / "saved"
    _saved_run(tiny_zoo, "qwen2_moe", save, tmp_path)
    meta = json.loads((save / "moeq.json").read_text())
    assert meta["format"] == "moeq-quantized" and meta["recipe"]["router"]["mode"] == "quantize"
    assert any(k.endswith("mlp.gate") for k in meta["input_quant"])
    assert meta["quant_experts"]
