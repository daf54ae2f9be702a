"""Issue 27: the families added from transformers' modeling files, and two found from the model only.

For each: RTN and GPTQ W4 runs succeed with evaluation, `expert_stats` has one row per (MoE layer,
routed expert), routing agreement has one value per MoE layer, every expert changed and stays close
to FP, and the saved model reloads with identical logits (plain transformers too). For each described
family, its routing rule reproduces the model's own expert choice exactly on random inputs.
"""

from __future__ import annotations

import pytest
import torch

from moeq.contract.describe import describe_dir
from moeq.quant_core.adapters.dispatch import DispatchRecorder
from moeq.quant_core.adapters.model import MoEModel, get_path
from moeq.quant_core.api import run
from moeq.quant_core.context import RunContext
from moeq.quant_core.functional.affine import snr_db
from moeq.quant_core.functional.routing import route
from moeq.quant_core.io.load import check_probe, load_quantized
from moeq.quant_core.zoo.build import ensure_built
from moeq.quant_core.zoo.tiny_families import MORE_TINY_CONFIGS, UNDESCRIBED

MORE = tuple(MORE_TINY_CONFIGS)
# end-to-end runs take 10-40 s per family on a shared CPU: three in the default suite (grouped sigmoid
# routing with shared experts and a dense first layer; Granite's fused experts; one undescribed family),
# every family with -m slow
DEFAULT_E2E = ("dots1", "granitemoe", "cohere2_moe")
E2E = [f if f in DEFAULT_E2E else pytest.param(f, marks=pytest.mark.slow) for f in MORE]
DESCRIBED = tuple(f for f in MORE if f not in UNDESCRIBED)
SMALL = {"calibration": {"source": "random", "samples": 4, "seq_len": 32},
         "eval": {"source": "random", "tasks": [], "ppl_windows": 2, "seq_len": 32, "kl_tokens": 64}}


@pytest.fixture(scope="module")
def more_zoo(tmp_path_factory):
    return tmp_path_factory.mktemp("more-zoo")


def _load(path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path).eval()
    model.set_experts_implementation("eager")
    return model.requires_grad_(False)


def _ids(seed: int, shape=(2, 24)) -> torch.Tensor:
    return torch.randint(4, 100, shape, generator=torch.Generator().manual_seed(seed))


def _by_expert(index: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    order = index.argsort(-1)
    return index.gather(-1, order), weights.gather(-1, order)


@pytest.mark.parametrize("family", DESCRIBED)
def test_routing_rule_reproduces_the_models_expert_choice(more_zoo, family):
    path = ensure_built(f"tiny-{family}", more_zoo)
    model = _load(path)
    moe = MoEModel(model)
    info = describe_dir(path)
    assert moe.spec.described and sorted(moe.blocks) == list(info.moe_layers)
    assert all((b.shared is not None) == info.shared_experts and b.num_experts == info.num_experts
               and b.top_k == info.top_k for b in moe.moe_blocks())
    with DispatchRecorder(moe) as rec, torch.no_grad():
        model(input_ids=_ids(1, (4, 32)))
    for i, block in moe.blocks.items():
        d = rec.take(i)
        index, weights = _by_expert(*route(d.logits, block.routing_rule(), block.routing_bias()))
        model_index, model_weights = _by_expert(d.index, d.weights)
        assert torch.equal(index, model_index), f"layer {i}: the rule picks other experts than the model"
        torch.testing.assert_close(weights, model_weights, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", DESCRIBED)
def test_expert_views_and_dispatch_recompute_the_blocks_experts(more_zoo, family):
    """The [expert, out, in] views the quantizers write into, with the recorded dispatch, give what the
    block's experts compute (gpt-oss: interleaved gate/up, biases, clamped SwiGLU; Llama 4: the scores
    scale the expert input)."""
    model = _load(ensure_built(f"tiny-{family}", more_zoo))
    moe = MoEModel(model)
    got = {}
    hooks = []
    for i, b in moe.blocks.items():
        if b.spec.expert_call == "scaled_input":  # the routed part of the block's output: all but the shared expert
            hooks.append(b.block.register_forward_hook(lambda m, a, out, i=i, b=b: got.__setitem__(
                i, (out[0] if isinstance(out, tuple) else out).reshape(-1, a[0].shape[-1])
                - b.shared(a[0].reshape(-1, a[0].shape[-1])))))
        elif b.spec.expert_call == "sorted":  # the block runs its weight stacks, then adds its bias (JetMoE)
            hooks.append(b.block.register_forward_hook(lambda m, a, out, i=i: got.__setitem__(i, out - m.bias)))
        else:
            hooks.append(b.experts.module.register_forward_hook(lambda m, a, out, i=i: got.__setitem__(i, out)))
    with DispatchRecorder(moe, keep_inputs=True) as rec, torch.no_grad():
        model(input_ids=_ids(5))
    for h in hooks:
        h.remove()
    for i, block in moe.blocks.items():
        d = rec.take(i)
        x, index, weights = block.expert_inputs(d.inputs, d.index, d.weights)
        recomputed = torch.zeros(d.num_tokens, x.shape[-1])
        with torch.no_grad():
            for r in range(x.shape[0]):
                for slot in range(index.shape[1]):
                    t = r // (x.shape[0] // d.num_tokens)
                    e = int(index[r, slot])
                    recomputed[t] += weights[r, slot] * block.experts.expert_output(e, x[r:r + 1])[0]
        torch.testing.assert_close(recomputed, got[i].reshape(recomputed.shape), rtol=1e-4, atol=1e-5)


def test_attention_experts_calibrate_on_the_tokens_their_router_sends(more_zoo):
    """JetMoE's mixture-of-attention q projections: each expert's GPTQ statistics come from exactly the
    tokens the attention router sends it (read where the stack is called, not recomputed)."""
    from moeq.quant_core.adapters.stacked import sorted_dispatch
    from moeq.quant_core.algorithms.capture import capture_first_layer_inputs
    from moeq.quant_core.algorithms.stacks import collect_stack_inputs

    moe = MoEModel(_load(ensure_built("tiny-jetmoe", more_zoo)))
    batches = capture_first_layer_inputs(moe, _ids(6), 2, torch.device("cpu"))
    stacks = moe.attn_expert_stacks(0)
    q_proj = moe.spec.attn_expert_stacks[0]
    layer = moe.layers[0]
    with torch.no_grad():
        stats = collect_stack_inputs(layer, stacks, batches, moe.spec.post_attn_norm)
        x = moe.input_norm(0)(batches[0].hidden).reshape(-1, batches[0].hidden.shape[-1])
        index, _, _ = sorted_dispatch(get_path(layer, q_proj.rpartition(".")[0]).router(x))
    n = stacks[q_proj].weight.shape[0]
    assert [s.count for s in stats[q_proj]] == torch.bincount(index.reshape(-1), minlength=n).tolist()
    for e in range(n):
        xe = x[(index == e).any(-1)]
        if xe.shape[0]:
            torch.testing.assert_close(stats[q_proj][e].H(), 2.0 * xe.T @ xe / xe.shape[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", ["glm4_moe", "minimax_m2", "ernie4_5_moe"])
def test_the_selection_bias_matters_to_the_rule(more_zoo, family):
    """The rule test above could fail: leaving out the family's selection bias changes the choice."""
    model = _load(ensure_built(f"tiny-{family}", more_zoo))
    moe = MoEModel(model)
    with DispatchRecorder(moe) as rec, torch.no_grad():
        model(input_ids=_ids(2, (4, 32)))
    differs = 0
    for i, block in moe.blocks.items():
        d = rec.take(i)
        assert block.routing_bias() is not None
        index, _ = route(d.logits, block.routing_rule(), None)
        differs += int((index.sort(-1).values != d.index.sort(-1).values).any(-1).sum())
    assert differs > 0


@pytest.mark.parametrize("family", E2E)
def test_family_quantizes_evaluates_saves_and_reloads(more_zoo, tmp_path, family):
    path = ensure_built(f"tiny-{family}", more_zoo)
    info = describe_dir(path)
    fp_moe = MoEModel(_load(path))
    assert sorted(fp_moe.blocks) == list(info.moe_layers)
    assert fp_moe.spec.described == (family not in UNDESCRIBED)
    assert all((b.shared is not None) == info.shared_experts for b in fp_moe.moe_blocks())
    ids = _ids(3)
    for method in ("rtn", "gptq"):
        save = tmp_path / method
        ctx = RunContext(zoo_dir=more_zoo, cache_dir=tmp_path / "cache", save_dir=save)
        result = run({"model": f"tiny-{family}", "weights": {"bits": 4, "group_size": 16}, "techniques": [method],
                      **SMALL}, ctx)
        rows = sorted((r["layer"], r["expert"]) for r in result["expert_stats"])
        assert rows == [(i, e) for i in info.moe_layers for e in range(info.num_experts)]
        routing = result["metrics"]["routing"]
        assert routing["layers"] == list(info.moe_layers)
        assert len(routing["topk_agreement"]) == len(info.moe_layers)
        assert all(0.5 < a <= 1.0 for a in routing["topk_agreement"]), routing["topk_agreement"]
        loaded = load_quantized(save)
        assert check_probe(loaded, save)
        for i, block in loaded.moe.blocks.items():
            for e in range(block.num_experts):
                for part in ("gate_up", "down"):
                    w_fp, w_q = getattr(fp_moe.blocks[i].experts, part)()[e], getattr(block.experts, part)()[e]
                    assert not torch.equal(w_fp, w_q), f"{method}: layer {i} expert {e} {part} unchanged"
                    assert snr_db(w_fp, w_q) >= 14.0, f"{method}: layer {i} expert {e} {part} far from FP"
            fp_shared = fp_moe.blocks[i].shared_linears()
            assert sorted(block.shared_linears()) == sorted(fp_shared)
            for name, mod in block.shared_linears().items():  # shared experts, block- or layer-level
                w_fp = fp_shared[name].weight
                assert not torch.equal(w_fp, mod.weight), f"{method}: layer {i} shared {name} unchanged"
                assert snr_db(w_fp, mod.weight) >= 14.0, f"{method}: layer {i} shared {name} far from FP"
        for i in range(len(loaded.moe.layers)):  # per-expert weight stacks of the token mixer (JetMoE's MoA)
            fp_stacks, stacks = fp_moe.attn_expert_stacks(i), loaded.moe.attn_expert_stacks(i)
            assert len(stacks) == len(fp_moe.spec.attn_expert_stacks) == len(fp_stacks)
            for path in fp_moe.spec.attn_routers:  # the attention experts' router stays FP
                assert torch.equal(get_path(fp_moe.layers[i], path).weight, get_path(loaded.moe.layers[i], path).weight)
            for name, mod in stacks.items():
                for e in range(mod.weight.shape[0]):
                    w_fp, w_q = fp_stacks[name].weight[e], mod.weight[e]
                    assert not torch.equal(w_fp, w_q), f"{method}: layer {i} {name} expert {e} unchanged"
                    assert snr_db(w_fp, w_q) >= 14.0, f"{method}: layer {i} {name} expert {e} far from FP"
        plain = _load(save)  # the saved model without moeq code
        with torch.no_grad():
            assert torch.equal(plain(input_ids=ids).logits, loaded.model(input_ids=ids).logits)


@pytest.mark.parametrize("model_type, overrides, message", [
    ("jetmoe", dict(num_local_experts=4, num_experts_per_tok=2, intermediate_size=32, kv_channels=16),
     "not transformers' standard fused experts"),
    ("granitemoeshared", dict(num_local_experts=4, num_experts_per_tok=2, intermediate_size=32,
                              shared_intermediate_size=32), "linears outside its token mixer and MoE block"),
])
def test_undescribed_layouts_the_detector_cannot_handle_are_one_clear_line(model_type, overrides, message):
    """Both families are described; found from the model alone, their layouts are refused in one line."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from moeq.contract.errors import ModelError
    from moeq.quant_core.adapters.detect import detect_spec
    from moeq.quant_core.zoo.tiny import _COMMON

    config = AutoConfig.for_model(model_type, **{**_COMMON, "num_hidden_layers": 2, **overrides})
    model = AutoModelForCausalLM.from_config(config)
    with pytest.raises(ModelError, match=f"{model_type}.*{message}") as err:
        detect_spec(model)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("model_type, overrides", [
    ("gpt_oss", dict(num_local_experts=4, num_experts_per_tok=2, head_dim=16, intermediate_size=32, sliding_window=8)),
    ("cohere2_moe", dict(num_experts=4, num_experts_per_tok=2, intermediate_size=32, head_dim=16, sliding_window=8,
                         layer_types=["sliding_attention", "full_attention", "sliding_attention"])),
    ("qwen3_next", dict(MORE_TINY_CONFIGS["qwen3_next"][1])),
])
def test_calibration_passes_give_each_layer_its_own_mask(model_type, overrides):
    """Layers walked one at a time (calibration, streaming) compute what the whole model computes, also
    when sliding, full and linear attention layers get different masks and windows exceed the window."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from moeq.quant_core.algorithms.capture import capture_first_layer_inputs, run_layer
    from moeq.quant_core.zoo.tiny import _COMMON

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **{**_COMMON, **overrides})).eval()
    model.set_experts_implementation("eager")
    moe = MoEModel(model)
    ids = _ids(4, (2, 40))
    with torch.no_grad():
        want = model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states
        batches = capture_first_layer_inputs(moe, ids, 2, torch.device("cpu"))
        for i, layer in enumerate(moe.layers[:-1]):
            batches = run_layer(layer, batches)
            assert torch.equal(batches[0].hidden, want[i + 1]), f"layer {i} output differs"
    assert not any(type(m).__name__ == "_KwargsProbe" for m in model.modules())


@pytest.mark.slow
@pytest.mark.parametrize("family", ["jetmoe", "granitemoeshared"])
def test_streamed_run_equals_the_in_memory_run(more_zoo, tmp_path, family):
    """Layers filled one at a time from the checkpoint (the expert stacks and the layer-level shared MLP
    replaced as they load) quantize exactly as the model held in memory."""
    results = {}
    for mode in ("off", "on"):
        ctx = RunContext(zoo_dir=more_zoo, cache_dir=tmp_path / mode, stream=mode)
        results[mode] = run({"model": f"tiny-{family}", "weights": {"bits": 4, "group_size": 16},
                             "techniques": ["gptq"], **SMALL}, ctx)
    off, on = results["off"], results["on"]
    assert "streaming" in on and "streaming" not in off
    assert on["bits"] == off["bits"] and on["expert_stats"] == off["expert_stats"]
    # JetMoE's stacks run each expert on however many tokens a pass brings: the routing KL, ~1e-8 here,
    # agrees to float noise; every other figure exactly
    kl_on, kl_off = on["metrics"]["routing"].pop("kl"), off["metrics"]["routing"].pop("kl")
    assert kl_on == pytest.approx(kl_off, abs=1e-7)
    assert on["metrics"] == off["metrics"]
