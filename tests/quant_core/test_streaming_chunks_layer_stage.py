"""Layer-stage techniques and activation quantization on routed experts read by chunks: smoothing
(every aggregate, down_proj smoothing), DuQuant (shared MoE-input transform, per-expert down
transforms, GPTQ on the transformed inputs), EAQuant (per-expert input transforms, W4A4) and
activation quantization alone. A streamed run that loads each layer's experts a chunk at a time —
statistics read chunk by chunk, rewrites replayed on every chunk — gives the in-memory run's numbers
exactly, records every layer as chunked, and saves a model that reloads to the in-memory one. A
layer-stage technique that does not declare chunk support still gets whole layers, with a warning."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from moeq.contract.presets import expand, merge
from moeq.contract.registry import Technique, registered
from moeq.quant_core.api import run
from moeq.quant_core.apply.hooks import LayerHooks
from moeq.quant_core.context import RunContext
from moeq.quant_core.io.load import check_probe, load_quantized
from moeq.quant_core.streaming.synthetic import SyntheticSpec, write_synthetic
from tests.conftest import FAMILIES

SPEC = SyntheticSpec(hidden=64, intermediate=64, layers=2, experts=8, top_k=3)
EVAL = {"source": "random", "tasks": [], "ppl_windows": 2, "seq_len": 32, "kl_tokens": 64}
CALIB = {"source": "random", "samples": 4, "seq_len": 32}
CHUNK = 3  # chunks of 3, 3 and 2 experts: top-3 routing straddles them

CASES = {
    "eaquant_w4a4": merge({"activations": {"bits": 4}}, expand(["eaquant"])),
    "duquant_w4a8": merge({"activations": {"bits": 8}}, expand(["duquant"])),
    "smooth_all_duquant_gptq": {"techniques": [{"name": "smooth", "aggregate": "all", "down_proj": True},
                                               {"name": "duquant"}, {"name": "gptq", "min_tokens": 48}]},
    "smooth_expert_router_rtn": {"techniques": [{"name": "smooth", "aggregate": "expert", "readers": "q_up"},
                                                "rtn"]},
    "rtn_a8": {"techniques": ["rtn"], "activations": {"bits": 8}},
}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("stage-chunks") / "m", SPEC, seed=11)


def _recipe(model, case: str) -> dict:
    base = {"model": str(model), "weights": {"bits": 4, "group_size": 16}, "calibration": CALIB, "eval": EVAL}
    return merge(base, CASES[case])


def _run(recipe, where, stream: str, save: bool = False) -> dict:
    ctx = RunContext(zoo_dir=where / "zoo", cache_dir=where / "cache", stream=stream, stream_chunk_experts=CHUNK,
                     save_dir=where / "q" if save else None)
    return run(recipe, ctx)


@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_stage_techniques_on_chunks_equal_the_in_memory_run(model, tmp_path, case):
    recipe = _recipe(model, case)
    ref = _run(recipe, tmp_path / "mem", "off")
    got = _run(recipe, tmp_path / "chunks", "on")
    for stage in ("quantize", "evaluate"):
        record = got["streaming"]["expert_chunks"][stage]
        assert record["experts_per_chunk"] == [CHUNK] and record["chunked_layers"] == SPEC.layers, record
        assert not record["whole_layers"], record
    assert got["metrics"] == ref["metrics"] and got["bits"] == ref["bits"]
    assert got["expert_stats"] == ref["expert_stats"]
    assert got["diagnostics"].get("smoothing") == ref["diagnostics"].get("smoothing")
    assert not any("loaded whole" in w for w in got.get("warnings", []))
    assert ref["metrics"]["kl"] > 0  # the quantization did something the comparison could miss


def test_chunked_eaquant_model_saves_and_reloads_to_the_in_memory_model(model, tmp_path):
    recipe = _recipe(model, "eaquant_w4a4")
    _run(recipe, tmp_path / "mem", "off", save=True)
    _run(recipe, tmp_path / "chunks", "on", save=True)
    loaded, reference = load_quantized(tmp_path / "chunks" / "q"), load_quantized(tmp_path / "mem" / "q")
    assert check_probe(loaded, tmp_path / "chunks" / "q")
    ref_sd = reference.model.state_dict()
    assert all(torch.equal(v, ref_sd[k]) for k, v in loaded.model.state_dict().items())
    assert reference.records.keys() == loaded.records.keys()
    assert all(torch.equal(loaded.records[k].codes, reference.records[k].codes) for k in reference.records)
    ids = torch.randint(0, reference.model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.model(ids).logits, reference.model(ids).logits)


@dataclass(frozen=True)
class _OpaqueConfig:
    """A plugin's layer-stage technique that says nothing about chunks."""


class _OpaqueHooks(LayerHooks):
    pass


def test_layer_stage_technique_without_chunk_support_gets_whole_layers_and_a_warning(model, tmp_path):
    with registered(Technique("opaque_layer", _OpaqueConfig, "layer", lambda q, cfg: _OpaqueHooks(),
                              needs_calibration=True)):
        recipe = {**_recipe(model, "rtn_a8"), "techniques": ["opaque_layer", "rtn"]}
        result = _run(recipe, tmp_path, "on")
    whole = result["streaming"]["expert_chunks"]["quantize"]["whole_layers"]
    assert set(whole) == {"0", "1"} and "_OpaqueHooks" in whole["0"]
    assert result["streaming"]["expert_chunks"]["fp_evaluate"]["experts_per_chunk"] == [CHUNK]
    assert sum("loaded whole" in w for w in result["warnings"]) == 2 * SPEC.layers  # quantize and evaluate


@pytest.mark.parametrize("setting, chunked", [(SPEC.experts, False), (CHUNK, True)])
def test_packed_kernel_runs_load_a_layer_whole_only_when_one_chunk_would_hold_every_expert(model, setting, chunked):
    """With packed kernels possible (`kernels="auto"` on a GPU), a layer whose experts all fit one
    chunk is loaded whole (its kernel can be built); one that memory splits is chunked."""
    from moeq.quant_core.streaming.chunked_layers import ChunkedLayers
    from moeq.quant_core.streaming.skeleton import SkeletonModel

    sk = SkeletonModel(model)
    layers = ChunkedLayers(sk, setting, torch.device("cpu"), whole_when_fits=True)
    _, chunks = layers.load(0)
    assert (chunks is not None) == chunked
    assert layers.record()["whole_layers"] == ({} if chunked else {"0": "packed kernels, and memory for every expert"})
    assert not layers.warnings


@pytest.mark.slow  # ~1 min a family on a busy 2-core box
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("preset", ["eaquant", "duquant"])
def test_every_family_with_transforms_chunked_equals_in_memory(tiny_zoo, tmp_path, family, preset):
    """Shared experts and their gates, group routing, routing biases, MLA: the preset's smoothing and
    transforms on chunks of 2 experts give the in-memory numbers (W4A8)."""
    recipe = merge({"model": f"tiny-{family}", "weights": {"bits": 4}, "activations": {"bits": 8},
                    "calibration": CALIB, "eval": EVAL}, expand([preset]))
    runs = {mode: run(recipe, RunContext(zoo_dir=tiny_zoo, cache_dir=tmp_path / mode, stream=mode,
                                         stream_chunk_experts=2)) for mode in ("off", "on")}
    record = runs["on"]["streaming"]["expert_chunks"]["quantize"]
    assert record["chunked_layers"] and record["experts_per_chunk"] == [2] and not record["whole_layers"], record
    assert runs["on"]["metrics"] == runs["off"]["metrics"] and runs["on"]["expert_stats"] == runs["off"]["expert_stats"]
    assert runs["on"]["diagnostics"]["smoothing"] == runs["off"]["diagnostics"]["smoothing"]
