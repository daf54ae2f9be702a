"""The quick-start speed-ups change no number: the reused attention pass, the shared q/k/v input
statistics and the batched tokenization give exactly what the code they replace gave."""

from __future__ import annotations

import logging

import pytest
import torch

from moeq.quant_core.adapters.model import MoEModel
from moeq.quant_core.algorithms.capture import (InputStats, LinearInputCollector, _run_until_stop,
                                           capture_first_layer_inputs, run_layer)
from moeq.quant_core.algorithms.mlp_pass import capture_mlp_pass, next_inputs
from moeq.quant_core.context import RunContext
from moeq.quant_core.evaluate.scoring import encode, encode_many
from moeq.quant_core.quantize import ModelQuantizer
from moeq.quant_core.quantized import QuantState
from moeq.contract.recipe import parse_recipe
from tests.conftest import FAMILIES, load_tiny


def _batches(moe: MoEModel, n: int = 4, seq: int = 32, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    windows = torch.randint(3, moe.model.config.vocab_size, (n, seq), generator=g)
    return capture_first_layer_inputs(moe, windows, batch, torch.device("cpu"))


@pytest.mark.parametrize("family", FAMILIES)
def test_reused_mlp_pass_gives_the_layer_outputs_bit_for_bit(tiny_zoo, family, caplog):
    moe = MoEModel(load_tiny(tiny_zoo, family))
    batches = _batches(moe)
    layer = moe.layers[0]
    mlp_pass = capture_mlp_pass(layer, moe.spec.post_attn_norm, moe.spec.mlp, batches)
    assert len(mlp_pass.residuals) == len(batches)
    with caplog.at_level(logging.INFO, logger="moeq.quant_core.algorithms.mlp_pass"):
        got = next_inputs(layer, moe.spec.mlp, mlp_pass, batches)
    assert "running the whole layer" not in caplog.text  # the shortcut was taken, not the fallback
    want = run_layer(layer, batches)
    assert all(torch.equal(g.hidden, w.hidden) for g, w in zip(got, want))


def test_a_pass_that_does_not_match_the_layer_falls_back_to_the_whole_layer(tiny_zoo, caplog):
    moe = MoEModel(load_tiny(tiny_zoo, "mixtral"))
    batches = _batches(moe)
    layer = moe.layers[0]
    mlp_pass = capture_mlp_pass(layer, moe.spec.post_attn_norm, moe.spec.mlp, batches)
    mlp_pass.residuals = [r + 1.0 for r in mlp_pass.residuals]  # as if the layer were not residual + mlp
    with caplog.at_level(logging.INFO, logger="moeq.quant_core.algorithms.mlp_pass"):
        got = next_inputs(layer, moe.spec.mlp, mlp_pass, batches)
    assert "running the whole layer" in caplog.text
    want = run_layer(layer, batches)
    assert all(torch.equal(g.hidden, w.hidden) for g, w in zip(got, want))


@pytest.mark.parametrize("family", ["mixtral", "qwen2_moe", "deepseek_v3"])
def test_gptq_run_with_the_reused_pass_equals_the_layer_by_layer_loop(tiny_zoo, tmp_path, family):
    """ModelQuantizer.run (reusing each layer's MLP pass) quantizes exactly as quantize_layer followed
    by a full run_layer, the loop it replaced."""
    recipe = parse_recipe({"model": f"tiny-{family}", "weights": {"bits": 4, "group_size": 16},
                           "techniques": [{"name": "gptq"}], "calibration": {"source": "random"}})
    ctx = RunContext(zoo_dir=tiny_zoo, cache_dir=tmp_path)
    states = []
    for reuse in (True, False):
        model = load_tiny(tiny_zoo, family)
        moe = MoEModel(model)
        bits = {i: torch.full((b.num_experts,), 4.0) for i, b in moe.blocks.items()}
        g = torch.Generator().manual_seed(1)
        windows = torch.randint(3, model.config.vocab_size, (6, 48), generator=g)
        q = ModelQuantizer(moe, recipe, ctx, QuantState(), torch.device("cpu"), bits)
        if reuse:
            q.run(windows, 2)
        else:
            batches = capture_first_layer_inputs(moe, windows, 2, torch.device("cpu"))
            q.n_main = len(batches)
            for i, layer in enumerate(moe.layers):
                q.quantize_layer(i, layer, batches)
                batches = run_layer(layer, batches)
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    reused, looped = states
    assert reused.keys() == looped.keys()
    assert all(torch.equal(reused[k], looped[k]) for k in reused)


def test_linears_reading_one_input_share_its_statistics_without_aliasing(tiny_zoo):
    moe = MoEModel(load_tiny(tiny_zoo, "mixtral"))
    batches = _batches(moe)
    layer = moe.layers[0]
    attn = moe.attn_inputs(0)  # q/k/v read the same normed hidden state
    assert len(attn) >= 3
    with LinearInputCollector(dict(attn), want_hessian=True) as col:
        _run_until_stop(layer, batches)
    grabbed = []
    handle = moe.input_norm(0).register_forward_hook(lambda m, a, out: grabbed.append(out.detach()))
    try:
        _run_until_stop(layer, batches)
    finally:
        handle.remove()
    ref = InputStats()
    for x in grabbed:
        ref.update(x, True)
    for key, st in col.stats.items():
        assert torch.equal(st.hessian, ref.hessian) and torch.equal(st.absmax, ref.absmax), key
        assert st.count == ref.count
    a, b = list(col.stats.values())[:2]
    assert a.hessian.data_ptr() != b.hessian.data_ptr() and a.absmax.data_ptr() != b.absmax.data_ptr()


@pytest.mark.parametrize("family", ["mixtral", "qwen2_moe"])
def test_batched_encoding_equals_one_text_at_a_time(tiny_zoo, family):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_zoo / f"tiny-{family}")
    texts = ["Question: 2 + 3 =", " 5", "the cat sat", "", "Question: 2 + 3 =", "  spaced  out ", "ünïcödé ✓"]
    for bos in (True, False):
        assert encode_many(tok, texts, bos) == [encode(tok, t, bos) for t in texts]
    assert encode_many(tok, [], True) == []


def test_batched_encoding_equals_one_text_at_a_time_on_the_testbed(testbed_ctx):
    from transformers import AutoTokenizer

    from moeq.quant_core.evaluate.task_sources import resolve_tasks

    tok = AutoTokenizer.from_pretrained(testbed_ctx.zoo_dir / "testbed-mixtral")
    tasks = resolve_tasks(("testbed",), 5, 0)
    texts = [getattr(it, attr) for t in tasks for it in t.items for attr in ("context", "prompt") if hasattr(it, attr)]
    texts += [c for t in tasks for it in t.items for c in getattr(it, "choices", ())]
    assert len(texts) > 20
    assert encode_many(tok, texts, True) == [encode(tok, t, True) for t in texts]


def test_fp_cache_key_follows_everything_the_evaluation_reads(tiny_zoo, tmp_path):
    """Same inputs → same cache file; other windows, other task items, or a touched tokenizer file →
    another one (a stale FP reference would silently skew every metric of the run)."""
    import os
    import shutil

    from moeq.quant_core.evaluate.run import fp_cache_path
    from moeq.quant_core.evaluate.task_types import MCItem, Task
    from moeq.contract.recipe import EvalSpec

    model_dir = tmp_path / "m"
    shutil.copytree(tiny_zoo / "tiny-mixtral", model_dir)
    spec, cpu = EvalSpec(), torch.device("cpu")
    windows = torch.arange(64).reshape(2, 32)
    tasks = [Task("t", "mc", (MCItem("a", ("b", "c"), 0),), "d", 0.5)]

    def key(w=windows, t=tasks):
        return fp_cache_path(tmp_path / "cache", model_dir, spec, 0, cpu, w, t)

    first = key()
    assert key(windows.clone(), list(tasks)) == first
    assert key(windows + 1) != first
    assert key(t=[Task("t", "mc", (MCItem("a", ("b", "x"), 0),), "d", 0.5)]) != first
    tok = next(p for p in model_dir.iterdir() if p.name.startswith("tokenizer"))
    st = tok.stat()
    os.utime(tok, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert key() != first
