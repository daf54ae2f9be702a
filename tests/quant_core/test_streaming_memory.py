"""Acceptance: a generated sharded checkpoint larger than the allowance is quantized and evaluated
in a child process under a real (cgroup) memory limit of the interpreter's baseline (libraries and
the weightless skeleton) + 300 MiB, under half the checkpoint's size (≈ 640 MB), and
its metrics equal the in-memory run's exactly (same seeds). And (slow) a limit smaller than one
decoder layer's float32 bytes: the routed experts are streamed by chunks sized from that limit."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from moeq.contract.presets import expand, merge
from moeq.quant_core.api import run
from moeq.quant_core.context import RunContext
from moeq.quant_core.streaming.limits import cgroup_unavailable_reason, run_limited
from moeq.quant_core.streaming.select import checkpoint_bytes
from moeq.quant_core.streaming.synthetic import SyntheticSpec, write_synthetic

ALLOWANCE = 300 * 2**20
SPEC = SyntheticSpec(hidden=256, intermediate=1152, layers=22, experts=8)  # ≈ 640 MB float32, 29 MB a layer


@pytest.mark.timeout(1800)  # several minutes on a loaded 2-core box
def test_streamed_run_under_memory_limit_matches_in_memory_run(tmp_path):
    reason = cgroup_unavailable_reason()
    if reason:
        pytest.skip(reason)
    model = write_synthetic(tmp_path / "big", SPEC, seed=3)
    size = checkpoint_bytes(model)
    recipe = {"model": str(model), "weights": {"bits": 4, "group_size": 128}, "techniques": ["rtn"],
              "eval": {"source": "random", "tasks": [], "ppl_windows": 2, "seq_len": 32,
                       "kl_tokens": 128}}
    spec_file = tmp_path / "run.json"
    spec_file.write_text(json.dumps({"recipe": recipe, "out": str(tmp_path / "streamed.json"), "stream": "on",
                                     "zoo_dir": str(tmp_path / "zoo"), "cache_dir": str(tmp_path / "cache-s"),
                                     "save_dir": str(tmp_path / "saved")}))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    base = run_limited([sys.executable, "-m", "moeq.quant_core.streaming.child", "--baseline", str(model)], None, 300, env=env)
    assert base.returncode == 0, base.stderr[-2000:]
    limit = base.max_usage_bytes + ALLOWANCE
    assert 2 * (limit - base.max_usage_bytes) < size  # the allowance is under half the checkpoint
    limited = run_limited([sys.executable, "-m", "moeq.quant_core.streaming.child", str(spec_file)], limit, 1700, env=env)
    assert limited.returncode == 0, limited.stderr[-3000:]
    assert limited.max_usage_bytes <= limit
    streamed = json.loads((tmp_path / "streamed.json").read_text())

    ctx = RunContext(zoo_dir=tmp_path / "zoo", cache_dir=tmp_path / "cache-m", stream="off")
    in_memory = json.loads(json.dumps(run(recipe, ctx), default=str))
    assert streamed["metrics"] == in_memory["metrics"]
    assert streamed["tasks"] == in_memory["tasks"] and streamed["bits"] == in_memory["bits"]
    assert streamed["peak_device_mb"] is None and streamed["peak_host_rss_mb"] > 0
    print(f"checkpoint {size / 2**20:.0f} MiB, baseline {base.max_usage_bytes / 2**20:.0f} MiB, limit "
          f"{limit / 2**20:.0f} MiB, streamed cgroup peak {limited.max_usage_bytes / 2**20:.0f} MiB, "
          f"peak RSS {streamed['peak_host_rss_mb']:.0f} MiB, in-memory peak RSS {in_memory['peak_host_rss_mb']:.0f} MiB")


FAT = SyntheticSpec(hidden=512, intermediate=1536, layers=2, experts=64)  # 580 MiB float32 a layer, 1.2 GB in all
LIMIT_OF_LAYER = 0.85  # the cgroup limit, as a share of one layer's float32 bytes




def _eaquant_w4a4() -> dict:
    """The EAQuant preset at W4A4 (smoothing, per-expert DuQuant transforms, activation quantization:
    its statistics and rewrites of the experts go chunk by chunk too), with an 11-ratio clip search
    instead of the preset's 101 (which alone takes ~10 CPU minutes on these 128 experts)."""
    recipe = merge({"weights": {"bits": 4}, "activations": {"bits": 4},
                    "calibration": {"source": "random", "samples": 4, "seq_len": 64}}, expand(["eaquant"]))
    recipe["techniques"] = [t if t["name"] != "rtn" else {**t, "clip_steps": 11} for t in recipe["techniques"]]
    return recipe


FAT_RECIPES = {"rtn": {"weights": {"bits": 4, "group_size": 128}, "techniques": ["rtn"]},
               "eaquant_w4a4": _eaquant_w4a4()}


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", sorted(FAT_RECIPES))
def test_limit_below_one_layer_streams_experts_by_chunks(tmp_path, name):
    """A real memory limit smaller than one decoder layer (float32): the chunk of experts adapts,
    with no setting, and the metrics equal the in-memory run's."""
    reason = cgroup_unavailable_reason()
    if reason:
        pytest.skip(reason)
    model = write_synthetic(tmp_path / "fat", FAT, seed=4)
    limit = int(LIMIT_OF_LAYER * 4 * FAT.params_per_layer)
    recipe = merge({"model": str(model), "eval": {"source": "random", "tasks": [], "ppl_windows": 2, "seq_len": 64,
                                                  "kl_tokens": 128}}, FAT_RECIPES[name])
    spec_file = tmp_path / "run.json"
    spec_file.write_text(json.dumps({"recipe": recipe, "out": str(tmp_path / "streamed.json"),
                                     "zoo_dir": str(tmp_path / "zoo"), "cache_dir": str(tmp_path / "cache-s")}))
    # the child's intra-op threads as this process's: another thread count may round matmuls differently
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    limited = run_limited([sys.executable, "-m", "moeq.quant_core.streaming.child", str(spec_file)], limit, 1700, env=env)
    assert limited.returncode == 0, limited.stderr[-3000:]
    assert limited.max_usage_bytes <= limit
    streamed = json.loads((tmp_path / "streamed.json").read_text())
    chunks = streamed["streaming"]["expert_chunks"]
    for stage in ("fp_evaluate", "quantize", "evaluate"):
        assert chunks[stage]["chunked_layers"] == FAT.layers and max(chunks[stage]["experts_per_chunk"]) < FAT.experts

    ctx = RunContext(zoo_dir=tmp_path / "zoo", cache_dir=tmp_path / "cache-m", stream="off")
    in_memory = json.loads(json.dumps(run(recipe, ctx), default=str))
    assert streamed["metrics"] == in_memory["metrics"] and streamed["bits"] == in_memory["bits"]
    assert not any("loaded whole" in w for w in streamed.get("warnings", []))
    print(f"{name}: layer {4 * FAT.params_per_layer / 2**20:.0f} MiB float32, limit {limit / 2**20:.0f} MiB, cgroup peak "
          f"{limited.max_usage_bytes / 2**20:.0f} MiB, chunks {chunks['quantize']['experts_per_chunk']}")
