"""Layer streaming: the checkpoint reader refuses broken shards up front; FP8 block sources
dequantize exactly; a streamed model computes the in-memory model's logits bit for bit on every
family; a streamed run gives the in-memory run's metrics, and its saved model reloads exactly."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from moeq.quant_core.api import run
from moeq.quant_core.context import RunContext
from moeq.contract.errors import ModelError
from moeq.quant_core.io.load import check_probe, load_quantized
from moeq.quant_core.streaming.checkpoint import Checkpoint
from moeq.quant_core.streaming.runner import StreamRunner
from moeq.quant_core.streaming.skeleton import SkeletonModel
from moeq.quant_core.streaming.synthetic import SyntheticSpec, write_synthetic
from moeq.quant_core.streaming.writer import _on_disk
from tests.conftest import FAMILIES, load_tiny

TINY_EVAL = {"source": "random", "tasks": [], "ppl_windows": 2, "seq_len": 32, "kl_tokens": 64}


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("syn") / "m", SyntheticSpec(hidden=64, intermediate=64, layers=3))


def _ctx(tmp_path, zoo=None, **kw):
    return RunContext(zoo_dir=zoo or tmp_path / "zoo", cache_dir=tmp_path / "cache", **kw)


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_broken_shard_is_one_line_naming_it_before_any_work(sharded, tmp_path, damage):
    model = tmp_path / "m"
    shutil.copytree(sharded, model)
    shard = sorted(model.glob("model-*.safetensors"))[1]
    if damage == "missing":
        shard.unlink()
    else:
        data = shard.read_bytes()
        shard.write_bytes(data[:-100])
    ctx = _ctx(tmp_path, stream="on", save_dir=tmp_path / "out")
    with pytest.raises(ModelError) as err:
        run({"model": str(model), "weights": {"bits": 4, "group_size": 16}, "eval": TINY_EVAL}, ctx)
    msg = str(err.value)
    assert shard.name in msg and "\n" not in msg and damage in msg
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()  # nothing was started


def _to_fp8(src, dst, block=(32, 32)):
    """Write `src` (a tiny DeepSeek-V3) in DeepSeek-V3's FP8 format: decoder linears as e4m3 blocks."""
    tensors = load_file(str(src / "model.safetensors"))
    out, ref = {}, {}
    for name, w in tensors.items():
        if ".layers." in name and name.endswith("proj.weight") and w.dim() == 2:
            rows, cols = -(-w.shape[0] // block[0]), -(-w.shape[1] // block[1])
            scale = torch.zeros(rows, cols)
            for r in range(rows):
                for c in range(cols):
                    blk = w[r * block[0]:(r + 1) * block[0], c * block[1]:(c + 1) * block[1]]
                    scale[r, c] = blk.abs().amax().clamp(min=1e-8) / 448.0
            expanded = scale.repeat_interleave(block[0], 0)[:w.shape[0]].repeat_interleave(block[1], 1)[:, :w.shape[1]]
            q = (w / expanded).to(torch.float8_e4m3fn)
            out[name], out[name + "_scale_inv"] = q, scale
            deq = torch.empty(w.shape)  # reference: block by block, fp32 product, one cast
            for r in range(rows):
                for c in range(cols):
                    sl = (slice(r * block[0], (r + 1) * block[0]), slice(c * block[1], (c + 1) * block[1]))
                    deq[sl] = q[sl].float() * scale[r, c]
            ref[name] = deq.to(torch.bfloat16)
        else:
            out[name] = w.to(torch.bfloat16)
            ref[name] = out[name]
    dst.mkdir()
    save_file(out, str(dst / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((src / "config.json").read_text())
    config.update(dtype="bfloat16", quantization_config={"quant_method": "fp8", "fmt": "e4m3",
                                                         "activation_scheme": "dynamic", "weight_block_size": list(block)})
    (dst / "config.json").write_text(json.dumps(config))
    for f in src.iterdir():
        if f.name.startswith("tokenizer"):
            shutil.copy2(f, dst / f.name)
    return ref


def test_fp8_block_source_dequantizes_exactly_and_quantizes(tiny_zoo, tmp_path):
    fp8 = tmp_path / "v3-fp8"
    ref = _to_fp8(tiny_zoo / "tiny-deepseek_v3", fp8)
    sk = SkeletonModel(fp8)
    scaled = {k for k in load_file(str(fp8 / "model.safetensors")) if k.endswith("_scale_inv")}
    checked = 0
    for i in range(len(sk.moe.layers)):
        layer = sk.load_layer(i)
        prefix = f"model.layers.{i}."
        on_disk = _on_disk(sk.model, {prefix + k: v for k, v in layer.state_dict().items()})
        for name, value in on_disk.items():
            if name + "_scale_inv" in scaled:
                assert value.dtype == torch.bfloat16 and torch.equal(value, ref[name]), name
                checked += 1
            else:  # bf16 on disk; fp32-kept buffers (the routing bias) hold the same values
                assert torch.equal(value, ref[name].to(value.dtype)), name
        sk.release_layer(i)
    assert checked == len(scaled) > 10
    result = run({"model": str(fp8), "weights": {"bits": 4, "group_size": 16}, "eval": TINY_EVAL},
                 _ctx(tmp_path, save_dir=tmp_path / "q"))  # stream "auto" picks streaming for FP8 sources
    assert "streaming" in result and result["bits"]["quantized_params"] > 0
    assert result["peak_host_rss_mb"] > 0 and result["peak_device_mb"] is None
    loaded = load_quantized(tmp_path / "q")
    assert check_probe(loaded, tmp_path / "q")


@pytest.mark.parametrize("family", FAMILIES)
def test_streamed_logits_equal_in_memory(tiny_zoo, family):
    model = load_tiny(tiny_zoo, family)
    model.set_experts_implementation("eager")
    sk = SkeletonModel(tiny_zoo / f"tiny-{family}")
    batches = [torch.randint(4, 100, (2, 24), generator=torch.Generator().manual_seed(s)) for s in range(3)]
    got = {}
    runner = StreamRunner(sk, sk.source, torch.device("cpu"), max_state_bytes=1)  # one pass per batch
    runner.forward_many(batches, lambda j, logits: got.__setitem__(j, logits))
    assert runner.passes == 3 and not sk.loaded
    with torch.no_grad():
        for j, ids in enumerate(batches):
            assert torch.equal(got[j], model(input_ids=ids).logits)


def test_fused_on_disk_layout_loads_the_same(tiny_zoo, tmp_path):
    model = load_tiny(tiny_zoo, "olmoe")
    fused = tmp_path / "fused"
    shutil.copytree(tiny_zoo / "tiny-olmoe", fused)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(fused / "model.safetensors"))
    assert "model.layers.0.mlp.experts.gate_up_proj" in Checkpoint.open(fused).entries
    a, b = SkeletonModel(tiny_zoo / "tiny-olmoe"), SkeletonModel(fused)
    for i in range(len(a.moe.layers)):
        sa, sb = a.load_layer(i).state_dict(), b.load_layer(i).state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_streamed_run_matches_in_memory_run_and_reloads(tiny_zoo, tmp_path):
    from transformers import AutoModelForCausalLM

    task = tmp_path / "task.jsonl"  # scored through the streamed loglikelihood and lockstep generation paths
    task.write_text("\n".join(json.dumps(r) for r in (
        {"type": "mc", "context": "add 1+2=", "choices": ["3", "4", "5"], "gold": 0},
        {"type": "mc", "context": "cap sun>", "choices": ["SUN", "MOON"], "gold": 1})))
    gen = tmp_path / "gen.jsonl"
    gen.write_text("\n".join(json.dumps({"type": "gen", "prompt": p, "answer": "x", "max_new_tokens": 3})
                             for p in ("rev abc>", "rev abcd>", "cnt aab a>")))
    recipe = {"model": "tiny-qwen2_moe", "weights": {"bits": 4, "group_size": 16}, "activations": {"bits": 8},
              "router": "quantize", "techniques": ["gptq"],
              "calibration": {"source": "random", "samples": 4, "seq_len": 32},
              "eval": {**TINY_EVAL, "tasks": [f"file:{task}", f"file:{gen}"]}}
    results = {}
    for mode in ("off", "on"):
        ctx = RunContext(zoo_dir=tiny_zoo, cache_dir=tmp_path / mode / "cache", stream=mode, save_dir=tmp_path / mode / "q")
        results[mode] = run(recipe, ctx)
    off, on = results["off"], results["on"]
    assert on["metrics"] == off["metrics"] and on["bits"] == off["bits"] and "streaming" in on
    assert on["expert_stats"] == off["expert_stats"]
    saved = tmp_path / "on" / "q"
    loaded = load_quantized(saved)
    assert check_probe(loaded, saved)
    reference = load_quantized(tmp_path / "off" / "q")
    ref_sd = reference.model.state_dict()
    assert all(torch.equal(v, ref_sd[k]) for k, v in loaded.model.state_dict().items())
    plain = AutoModelForCausalLM.from_pretrained(saved)  # sharded plain checkpoint, no moeq code
    assert all(torch.equal(v, ref_sd[k]) for k, v in plain.state_dict().items())


@pytest.mark.parametrize("allocation", [{"method": "router_norm", "avg_bits": 3.0, "tiers": [2, 4], "other_bits": 8},
                                        {"method": "uniform", "other_bits": 8}])
def test_streamed_allocation_matches_in_memory(tiny_zoo, tmp_path, allocation):
    """Allocation streams: router-norm ranks each layer's experts when the layer is loaded."""
    recipe = {"model": "tiny-mixtral", "weights": {"bits": 3, "group_size": 16}, "techniques": ["rtn"],
              "allocation": allocation, "eval": TINY_EVAL}
    results = {mode: run(recipe, RunContext(zoo_dir=tiny_zoo, cache_dir=tmp_path / mode, stream=mode))
               for mode in ("off", "on")}
    off, on = results["off"], results["on"]
    assert "streaming" in on and on["metrics"] == off["metrics"] and on["bits"] == off["bits"]
    a_on, a_off = on["diagnostics"]["allocation"], off["diagnostics"]["allocation"]
    assert {k: v for k, v in a_on.items() if k != "seconds"} == {k: v for k, v in a_off.items() if k != "seconds"}
    if allocation["method"] == "router_norm":
        assert len({e["bits"] for layer in a_on["layers"].values() for e in layer}) == 2  # both tiers used
