"""Issue 27: gpt-oss's MXFP4 source format is dequantized by the streamed reader exactly as a block-by-
block reference (and as transformers' own converter) computes it, and a streamed run on it quantizes,
evaluates and reloads; the streamed model computes the in-memory logits bit for bit on new families."""

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
from moeq.quant_core.streaming.mxfp4 import FP4_E2M1, dequantize_mxfp4
from moeq.quant_core.streaming.runner import StreamRunner
from moeq.quant_core.streaming.skeleton import SkeletonModel
from moeq.quant_core.zoo.build import ensure_built

TINY_EVAL = {"source": "random", "tasks": [], "ppl_windows": 2, "seq_len": 32, "kl_tokens": 64}
LUT = torch.tensor(FP4_E2M1)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return tmp_path_factory.mktemp("mx-zoo")


def _encode(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[E, out, in] float → MXFP4 (blocks [E, out, in/32, 16], scales [E, out, in/32]), nearest FP4 value."""
    e, rows, cols = w.shape
    g = w.reshape(e, rows, cols // 32, 32)
    exp = torch.ceil(torch.log2(g.abs().amax(-1).clamp(min=1e-30) / 6.0)).clamp(-127, 127)
    idx = ((g / torch.exp2(exp)[..., None])[..., None] - LUT).abs().argmin(-1).to(torch.uint8)
    return idx[..., 0::2] | (idx[..., 1::2] << 4), (exp + 127).to(torch.uint8)


def _reference(blocks: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Block by block, value by value: fp4 × 2^(scale − 127); returned as the model holds it, [E, in, out]."""
    e, rows, groups, _ = blocks.shape
    out = torch.empty(e, rows, groups * 32)
    for x in range(e):
        for r in range(rows):
            for b in range(groups):
                factor = 2.0 ** (int(scales[x, r, b]) - 127)
                byte = blocks[x, r, b].tolist()
                vals = [v for pair in byte for v in (FP4_E2M1[pair & 0x0F], FP4_E2M1[pair >> 4])]
                out[x, r, b * 32:(b + 1) * 32] = torch.tensor(vals) * factor
    return out.transpose(1, 2)


def _to_mxfp4(src, dst) -> dict[str, torch.Tensor]:
    """Write tiny gpt-oss in its native MXFP4 layout (expert weights as _blocks/_scales); the reference weights."""
    tensors = load_file(str(src / "model.safetensors"))
    out, ref = {}, {}
    for name, w in tensors.items():
        if name.endswith(("experts.gate_up_proj", "experts.down_proj")):
            out[name + "_blocks"], out[name + "_scales"] = _encode(w.transpose(1, 2).contiguous())
            ref[name] = _reference(out[name + "_blocks"], out[name + "_scales"])
        else:
            out[name] = w
    dst.mkdir()
    save_file(out, str(dst / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((src / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
    (dst / "config.json").write_text(json.dumps(config))
    for f in src.iterdir():
        if f.name.startswith("tokenizer"):
            shutil.copy2(f, dst / f.name)
    return ref


def test_mxfp4_dequantization_equals_the_block_reference_and_transformers(zoo):
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    w = torch.randn(2, 6, 64) * torch.logspace(-3, 1, 64)  # blocks of very different magnitudes
    blocks, scales = _encode(w)
    got = dequantize_mxfp4(blocks, scales, torch.float32)
    assert torch.equal(got, _reference(blocks, scales))
    assert torch.equal(got, convert_moe_packed_tensors(blocks, scales, dtype=torch.float32))
    assert torch.equal(dequantize_mxfp4(blocks, scales, torch.bfloat16), got.to(torch.bfloat16))
    with pytest.raises(ModelError, match="_scales has shape"):
        dequantize_mxfp4(blocks, scales[..., :1], torch.float32, "w")


def test_mxfp4_source_streams_exactly_and_quantizes(zoo, tmp_path):
    mx = tmp_path / "gpt-oss-mxfp4"
    ref = _to_mxfp4(ensure_built("tiny-gpt_oss", zoo), mx)
    sk = SkeletonModel(mx)
    checked = 0
    for i in range(len(sk.moe.layers)):
        sd = sk.load_layer(i).state_dict()
        for proj in ("gate_up_proj", "down_proj"):
            assert torch.equal(sd[f"mlp.experts.{proj}"], ref[f"model.layers.{i}.mlp.experts.{proj}"])
            checked += 1
        sk.release_layer(i)
    assert checked == 2 * len(sk.moe.layers)
    ctx = RunContext(zoo_dir=zoo, cache_dir=tmp_path / "cache", save_dir=tmp_path / "q")
    result = run({"model": str(mx), "weights": {"bits": 4, "group_size": 16}, "eval": TINY_EVAL}, ctx)
    assert "streaming" in result  # stream "auto" picks streaming for MXFP4 sources
    assert len(result["expert_stats"]) == 3 * 6 and len(result["metrics"]["routing"]["topk_agreement"]) == 3
    loaded = load_quantized(tmp_path / "q")
    assert check_probe(loaded, tmp_path / "q")


@pytest.mark.parametrize("family", ["gpt_oss", pytest.param("glm4_moe", marks=pytest.mark.slow),
                                    pytest.param("qwen3_next", marks=pytest.mark.slow)])
def test_streamed_logits_equal_in_memory_on_new_families(zoo, family):
    from transformers import AutoModelForCausalLM

    path = ensure_built(f"tiny-{family}", zoo)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    model.set_experts_implementation("eager")
    sk = SkeletonModel(path)
    batches = [torch.randint(4, 100, (2, 24), generator=torch.Generator().manual_seed(s)) for s in range(2)]
    got = {}
    runner = StreamRunner(sk, sk.source, torch.device("cpu"), max_state_bytes=1)
    runner.forward_many(batches, lambda j, logits: got.__setitem__(j, logits))
    with torch.no_grad():
        for j, ids in enumerate(batches):
            assert torch.equal(got[j], model(input_ids=ids).logits)
