"""Export to compressed-tensors (mixed per-expert bits as config groups) and back through
compressed-tensors' own decompressor reproduces moeq's reloaded logits exactly."""

from __future__ import annotations

import json

import pytest
import torch

from moeq.app.cli import main
from moeq.quant_core.api import run
from moeq.quant_core.context import RunContext
from moeq.quant_core.io.load import load_quantized

pytest.importorskip("compressed_tensors")


@pytest.mark.parametrize("family, symmetric", [("mixtral", True), ("qwen2_moe", False), ("deepseek_v3", True)])
def test_compressed_tensors_round_trip(tiny_zoo, tmp_path, moeq_home, family, symmetric):
    from moeq.quant_core.io.export_ct import load_compressed_tensors

    save = tmp_path / "saved"
    run({"model": f"tiny-{family}", "weights": {"bits": 4, "group_size": 16, "symmetric": symmetric},
         "techniques": ["rtn"], "allocation": {"method": "random", "avg_bits": 3, "tiers": [2, 3, 4]},
         "eval": {"source": "random", "tasks": [], "ppl_windows": 1, "seq_len": 16}},
        RunContext(zoo_dir=tiny_zoo, cache_dir=tmp_path / "cache", save_dir=save))
    out = tmp_path / "ct"
    assert main(["export", str(save), str(out)]) == 0
    qcfg = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qcfg["format"] == "pack-quantized"
    assert sorted(g["weights"]["num_bits"] for g in qcfg["config_groups"].values()) == [2, 3, 4]
    experts = [t for g in qcfg["config_groups"].values() for t in g["targets"] if ".experts." in t]
    assert len(experts) == 3 * sum(1 for _ in load_quantized(save).moe.moe_blocks()) * \
        next(iter(load_quantized(save).moe.moe_blocks())).num_experts
    dense = load_compressed_tensors(out, tmp_path / "dense")
    dense.set_experts_implementation("eager")  # the same expert computation moeq's reload uses on CPU
    ref = load_quantized(save, kernels="torch").model
    ids = torch.randint(4, 100, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(dense(ids).logits, ref(ids).logits)
    ref_sd = ref.state_dict()  # the decompressed weights are moeq's grid values, bit for bit
    for name, t in dense.state_dict().items():
        assert torch.equal(t, ref_sd[name]), name


def test_hf_fallback_export_is_a_plain_checkpoint(tiny_zoo, tmp_path, moeq_home):
    from transformers import AutoModelForCausalLM

    save = tmp_path / "saved"
    run({"model": "tiny-olmoe", "weights": {"bits": 3, "group_size": 16}, "techniques": ["rtn"],
         "eval": {"source": "random", "tasks": [], "ppl_windows": 1, "seq_len": 16}},
        RunContext(zoo_dir=tiny_zoo, cache_dir=tmp_path / "cache", save_dir=save))
    assert main(["export", str(save), str(tmp_path / "hf"), "--format", "hf"]) == 0
    assert not list((tmp_path / "hf").glob("moeq*"))
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    model.set_experts_implementation("eager")  # the same expert computation moeq's reload uses on CPU
    ids = torch.randint(4, 100, (1, 8))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, load_quantized(save).model(ids).logits)
