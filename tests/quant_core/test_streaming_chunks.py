"""Routed experts by chunks: a streamed run that reads, quantizes, writes and evaluates a layer's
experts a chunk at a time gives the in-memory run's numbers exactly, at any chunk size (top-3
routing, so a token's contributions straddle chunks); its saved model reloads to the in-memory
run's weights and codes; a run that needs whole layers says so instead of exceeding its chunks."""

from __future__ import annotations

import pytest
import torch

from moeq.contract.errors import RecipeError
from moeq.quant_core.api import run
from moeq.quant_core.context import RunContext
from moeq.quant_core.io.load import check_probe, load_quantized
from moeq.quant_core.streaming.synthetic import SyntheticSpec, write_synthetic
from tests.conftest import FAMILIES

SPEC = SyntheticSpec(hidden=64, intermediate=64, layers=2, experts=8, top_k=3)
EVAL = {"source": "random", "tasks": [], "ppl_windows": 2, "seq_len": 32, "kl_tokens": 64}
CALIB = {"source": "random", "samples": 4, "seq_len": 32}
# GPTQ with a token floor some experts miss: their fallbacks must keep their expert numbers across chunks
TECHNIQUES = {"rtn": "rtn", "gptq": {"name": "gptq", "min_tokens": 48}}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("chunks") / "m", SPEC, seed=5)


def _recipe(model, method: str, **extra) -> dict:
    return {"model": str(model), "weights": {"bits": 4, "group_size": 16}, "techniques": [TECHNIQUES[method]],
            "calibration": CALIB, "eval": EVAL, **extra}


def _run(recipe, where, stream: str, chunk="auto", save: bool = False) -> dict:
    ctx = RunContext(zoo_dir=where / "zoo", cache_dir=where / "cache", stream=stream, stream_chunk_experts=chunk,
                     save_dir=where / "q" if save else None)
    return run(recipe, ctx)


@pytest.fixture(scope="module")
def in_memory(model, tmp_path_factory):
    return {m: _run(_recipe(model, m), tmp_path_factory.mktemp(f"mem-{m}"), "off", save=True) for m in ("rtn", "gptq")}


@pytest.mark.parametrize("method", ["rtn", "gptq"])
@pytest.mark.parametrize("chunk", [1, 3, 8])
def test_chunked_streamed_run_equals_in_memory_run(model, in_memory, tmp_path, method, chunk):
    got = _run(_recipe(model, method), tmp_path, "on", chunk)
    ref = in_memory[method]
    assert got["metrics"] == ref["metrics"] and got["bits"] == ref["bits"]
    assert got["expert_stats"] == ref["expert_stats"]  # tokens, bits, error and fallback of every expert
    if method == "gptq":
        fell_back = {(r["layer"], r["expert"]) for r in ref["expert_stats"] if r["fallback"]}
        assert 0 < len(fell_back) < SPEC.layers * SPEC.experts and any(e >= 3 for _, e in fell_back)
    for stage in ("fp_evaluate", "quantize", "evaluate"):
        record = got["streaming"]["expert_chunks"][stage]
        assert record["experts_per_chunk"] == [chunk] and record["chunked_layers"] == SPEC.layers
        assert not record["whole_layers"]
    peaks = got["streaming"]["stage_peaks"]
    assert set(peaks) >= {"load", "fp_evaluate", "quantize", "evaluate"}
    assert got["peak_host_rss_mb"] == max(p["peak_host_rss_mb"] for p in peaks.values())


def test_chunked_saved_model_reloads_to_the_in_memory_model(model, in_memory, tmp_path_factory, tmp_path):
    _run(_recipe(model, "gptq"), tmp_path, "on", 3, save=True)
    saved = tmp_path / "q"
    assert sorted(p.name for p in saved.glob("moeq_quant-layer-00000-e*.safetensors")) == [
        f"moeq_quant-layer-00000-e{e:05d}.safetensors" for e in (0, 3, 6)]
    loaded = load_quantized(saved)
    assert check_probe(loaded, saved)
    mem_dirs = [p for p in tmp_path_factory.getbasetemp().glob("mem-gptq*/q")]
    reference = load_quantized(mem_dirs[0])
    ref_sd = reference.model.state_dict()
    assert all(torch.equal(v, ref_sd[k]) for k, v in loaded.model.state_dict().items())
    assert reference.records.keys() == loaded.records.keys()
    assert all(torch.equal(loaded.records[k].codes, reference.records[k].codes) for k in reference.records)


def test_chunked_router_norm_allocation_equals_in_memory(model, tmp_path):
    """router_norm's variance guard reads every expert's gate rows: chunk by chunk here."""
    recipe = {**_recipe(model, "rtn"), "weights": {"bits": 3, "group_size": 16},
              "allocation": {"method": "router_norm", "avg_bits": 3.0, "tiers": [2, 4], "other_bits": 8}}
    off, on = _run(recipe, tmp_path / "off", "off"), _run(recipe, tmp_path / "on", "on", 3)
    assert on["metrics"] == off["metrics"] and on["bits"] == off["bits"]
    a_on, a_off = on["diagnostics"]["allocation"], off["diagnostics"]["allocation"]
    assert a_on["layers"] == a_off["layers"]


@pytest.mark.parametrize("bad", [0, -2, "many", 2.5, True])
def test_bad_chunk_setting_is_one_clear_error(model, tmp_path, bad):
    with pytest.raises(RecipeError) as err:
        _run(_recipe(model, "rtn"), tmp_path, "on", bad)
    assert "stream_chunk_experts" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow  # ~40 s a family on a busy 2-core box
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_chunked_equals_in_memory(tiny_zoo, tmp_path, family):
    """Shared experts, group routing, routing biases, sliding windows: chunks of 2 experts give the
    in-memory numbers, or the layer is loaded whole with its reason recorded."""
    recipe = {"model": f"tiny-{family}", "weights": {"bits": 4, "group_size": 16}, "techniques": ["gptq"],
              "calibration": CALIB, "eval": EVAL}
    runs = {mode: run(recipe, RunContext(zoo_dir=tiny_zoo, cache_dir=tmp_path / mode, stream=mode,
                                         stream_chunk_experts=2)) for mode in ("off", "on")}
    assert runs["on"]["metrics"] == runs["off"]["metrics"] and runs["on"]["expert_stats"] == runs["off"]["expert_stats"]
    record = runs["on"]["streaming"]["expert_chunks"]["quantize"]
    assert record["chunked_layers"] and record["experts_per_chunk"] == [2], record
