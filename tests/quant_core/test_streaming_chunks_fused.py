"""Issue 31: routed experts stored fused on disk ([experts, ...]: gpt-oss' layout in MXFP4 blocks and
scales, Llama 4's, Granite's under renamed keys, Qwen3-MoE saved fused in bfloat16) and experts called
with scaled inputs (Llama 4) are streamed a chunk of experts at a time — only the chunk's rows read,
dequantized, quantized and written — and the run's metrics, bits and per-expert statistics equal the
in-memory run's exactly."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from moeq.contract.errors import ModelError
from moeq.quant_core.api import run
from moeq.quant_core.context import RunContext
from moeq.quant_core.io.load import check_probe, load_quantized
from moeq.quant_core.streaming.checkpoint import Checkpoint
from moeq.quant_core.streaming.skeleton import SkeletonModel
from moeq.quant_core.zoo.build import ensure_built
from tests.quant_core.test_mxfp4_source import _to_mxfp4

EVAL = {"source": "random", "tasks": [], "ppl_windows": 2, "seq_len": 32, "kl_tokens": 64}
CALIB = {"source": "random", "samples": 4, "seq_len": 32}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return tmp_path_factory.mktemp("fused-zoo")


def _recipe(model, technique="gptq") -> dict:
    return {"model": str(model), "weights": {"bits": 4, "group_size": 16}, "techniques": [technique],
            "calibration": CALIB, "eval": EVAL}


def _run(recipe, where, stream: str, chunk="auto", save: bool = False) -> dict:
    ctx = RunContext(zoo_dir=where / "zoo", cache_dir=where / "cache", stream=stream, stream_chunk_experts=chunk,
                     save_dir=where / "q" if save else None)
    return run(recipe, ctx)


def _assert_equal_chunked(got: dict, ref: dict, chunk: int, moe_layers: int) -> None:
    assert got["metrics"] == ref["metrics"] and got["bits"] == ref["bits"]
    assert got["expert_stats"] == ref["expert_stats"]
    for stage in ("fp_evaluate", "quantize", "evaluate"):
        record = got["streaming"]["expert_chunks"][stage]
        assert record["experts_per_chunk"] == [chunk] and record["chunked_layers"] == moe_layers, (stage, record)
        assert not record["whole_layers"], (stage, record)


@pytest.fixture(scope="module")
def gpt_oss_mxfp4(zoo, tmp_path_factory):
    """tiny gpt-oss in MXFP4, and the same model with the dequantized weights stored in float32."""
    root = tmp_path_factory.mktemp("gpt-oss")
    src = ensure_built("tiny-gpt_oss", zoo)
    ref = _to_mxfp4(src, root / "mxfp4")
    plain = root / "plain"
    shutil.copytree(src, plain)
    tensors = load_file(str(src / "model.safetensors"))
    tensors.update({k: v.contiguous() for k, v in ref.items()})
    save_file(tensors, str(plain / "model.safetensors"), metadata={"format": "pt"})
    return root / "mxfp4", plain


def test_ranged_read_reads_only_the_rows(gpt_oss_mxfp4):
    mx, plain = gpt_oss_mxfp4
    ckpt = Checkpoint.open(plain)
    name = "model.layers.1.mlp.experts.gate_up_proj"
    assert torch.equal(ckpt.read(name, (2, 5)), ckpt.read(name)[2:5])
    sk = SkeletonModel(mx)
    whole = sk.source.read([name + "_blocks"])[name]
    assert torch.equal(sk.source.read([name + "_blocks"], rows=(1, 3))[name], whole[1:3])
    with pytest.raises(ModelError, match="has no rows 5-6"):
        ckpt.read(name, (5, 7))


def test_fp8_fused_tensor_rows_are_dequantized_with_their_block_scales(tmp_path):
    from moeq.quant_core.streaming.fp8 import Fp8Format
    from moeq.quant_core.streaming.skeleton import LayerSource

    name = "model.layers.0.mlp.experts.down_proj"
    w = (torch.randn(5, 8, 12) * 3).to(torch.float8_e4m3fn)
    save_file({name: w, name + "_scale_inv": torch.rand(5, 2, 3) + 0.5}, str(tmp_path / "model.safetensors"))
    source = LayerSource(Checkpoint.open(tmp_path), 1, Fp8Format((4, 4)), torch.float32)
    whole = source.read([name])[name]
    assert torch.equal(source.read([name], rows=(3, 5))[name], whole[3:5]) and whole.shape == (5, 8, 12)


@pytest.fixture(scope="module")
def gpt_oss_in_memory(gpt_oss_mxfp4, tmp_path_factory):
    """The reference: the in-memory run of the same weights, dequantized, stored in float32."""
    return _run(_recipe(gpt_oss_mxfp4[1]), tmp_path_factory.mktemp("mem"), "off")


@pytest.mark.parametrize("chunk", [1, 2])
def test_mxfp4_fused_experts_stream_by_chunks_exactly(gpt_oss_mxfp4, gpt_oss_in_memory, tmp_path, chunk):
    got = _run(_recipe(gpt_oss_mxfp4[0]), tmp_path, "on", chunk, save=chunk == 2)
    _assert_equal_chunked(got, gpt_oss_in_memory, chunk, 3)
    if chunk == 2:
        saved = tmp_path / "q"
        assert sorted(p.name for p in saved.glob("model-layer-00000*")) == ["model-layer-00000-experts.safetensors",
                                                                            "model-layer-00000.safetensors"]
        assert check_probe(load_quantized(saved), saved)


@pytest.mark.parametrize("family,chunk,moe_layers", [("llama4", 1, 1), ("llama4", 4, 1), ("granitemoe", 4, 3)])
def test_fused_zoo_family_streams_by_chunks_exactly(zoo, tmp_path, family, chunk, moe_layers):
    """Llama 4: fused on disk and called with router-scaled inputs; Granite: fused on disk under
    names transformers renames (`input_linear.weight` → `experts.gate_up_proj`). 6 experts each."""
    model = ensure_built(f"tiny-{family}", zoo)
    ref = _run(_recipe(model), tmp_path / "mem", "off")
    _assert_equal_chunked(_run(_recipe(model), tmp_path / "on", "on", chunk), ref, chunk, moe_layers)


def test_fused_bf16_checkpoint_of_a_per_expert_family_streams_by_chunks_exactly(zoo, tmp_path):
    """Qwen3-MoE saved with its in-memory fused tensors ([16, ...], bfloat16) instead of one tensor per
    expert: chunks of 3 (top-4 routing straddles them) are read as row ranges, written back per expert."""
    from transformers import AutoModelForCausalLM

    src, fused = ensure_built("tiny-qwen3_moe", zoo), tmp_path / "fused"
    shutil.copytree(src, fused)
    model = AutoModelForCausalLM.from_pretrained(src)
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()},
              str(fused / "model.safetensors"), metadata={"format": "pt"})
    assert "model.layers.0.mlp.experts.gate_up_proj" in Checkpoint.open(fused).entries
    config = json.loads((fused / "config.json").read_text())
    (fused / "config.json").write_text(json.dumps({**config, "dtype": "bfloat16"}))
    ref = _run(_recipe(fused, "rtn"), tmp_path / "mem", "off")
    _assert_equal_chunked(_run(_recipe(fused, "rtn"), tmp_path / "on", "on", 3), ref, 3, 3)


def test_fused_layouts_that_cannot_be_sliced_keep_the_layer_whole_with_the_reason(zoo, tmp_path):
    from moeq.quant_core.streaming.expert_chunks import chunk_unavailable_reason

    src, bad = ensure_built("tiny-llama4", zoo), tmp_path / "bad"
    shutil.copytree(src, bad)
    tensors = load_file(str(src / "model.safetensors"))
    name = "model.layers.1.feed_forward.experts.gate_up_proj"
    tensors[name] = tensors[name][:5].contiguous()
    save_file(tensors, str(bad / "model.safetensors"), metadata={"format": "pt"})
    assert chunk_unavailable_reason(SkeletonModel(src), 1) is None
    sk = SkeletonModel(bad)
    assert chunk_unavailable_reason(sk, 0) == "dense layer"
    assert chunk_unavailable_reason(sk, 1) == f"fused experts tensor {name} has shape [5, 64, 64], not [6, ...]"
