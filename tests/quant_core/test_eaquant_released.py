"""EAQuant as released (darren-fzq1/EAQuant 37c4509 / 0fe98b3), against re-typed pieces of the authors'
code on small inputs: the one-ratio router clip search (`per_token_dynamic_calibration_V2` with
`per_channel_kl_top0`), the balance cap `int(8/64 · seq_len · r)` with first-come selection, and the
preset's `max` merge without the router factor."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from moeq.contract.recipe import RouterSpec
from moeq.quant_core.algorithms.router import single_clip
from moeq.quant_core.functional.routing import RoutingRule


def _reference_kl_top0_ratio(w: torch.Tensor, act: torch.Tensor, bits: int, top_k: int) -> float:
    """Re-typed from the authors' router weight search: asymmetric per-row range scaled by one ratio
    0.35 + i·0.65/100 (i = 0 … 100); the score is one KL for the whole router (FP-weight logits'
    softmax against the quantized-weight logits' log-softmax, both gathered at the FP top-k, batch
    mean); a ratio replaces the kept one only when strictly better."""
    qmax = 2 ** bits - 1
    lo, hi = w.amin(-1, keepdim=True), w.amax(-1, keepdim=True)
    ref_logits = act @ w.T
    idx = ref_logits.topk(top_k, dim=-1).indices
    ref = F.softmax(ref_logits, dim=-1).gather(-1, idx)
    best, kept = 100000.0, 1.0
    for i in range(101):
        ratio = 0.35 + i * (1 - 0.35) / 100
        scale = ((ratio * hi - ratio * lo) / qmax).clamp(min=1e-5, max=1e4)
        zero = (-(ratio * lo) / scale).round().clamp(0, qmax)
        wq = ((w / scale).round() + zero).clamp(0, qmax).sub(zero).mul(scale)
        can = F.log_softmax(act @ wq.T, dim=-1).gather(-1, idx)
        score = float(F.kl_div(can, ref, reduction="batchmean"))
        if score < best:
            best, kept = score, ratio
    return kept


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_single_router_ratio_equals_the_authors_search_on_a_toy_router(seed):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(8, 16, generator=gen)
    w[:, 0] *= 6  # an outlier column makes clipping worth something
    act = torch.randn(64, 16, generator=gen)
    spec = RouterSpec(mode="align", bits=4, search="single", symmetric=False)
    ratio, diag = single_clip(w, act, spec, RoutingRule(top_k=2))
    assert ratio == pytest.approx(_reference_kl_top0_ratio(w, act, 4, 2), abs=1e-6)
    assert diag["after"]["objective"] <= diag["before"]["objective"]


def test_single_router_search_prefers_the_first_of_equal_ratios():
    # a router whose rows sit on the 1-bit-wide grid at every ratio ≥ 0.35 would tie; here all rows are
    # exactly representable at ratio 1, so the loss is 0 there and the search must not move below it
    w = torch.tensor([[0.0, 1.0, 2.0, 3.0], [-3.0, -2.0, -1.0, 0.0]])
    act = torch.eye(4)
    ratio, _ = single_clip(w, act, RouterSpec(mode="align", bits=2, search="single", symmetric=False),
                           RoutingRule(top_k=1))
    assert ratio == pytest.approx(_reference_kl_top0_ratio(w, act, 2, 1), abs=1e-6)


def test_balance_cap_is_the_authors_expert_token_num():
    from moeq.quant_core.algorithms.balance import expert_token_cap

    assert expert_token_cap(8, 64, 4096, 2.0) == 1024  # OLMoE, run.sh: seq_length 4096, ratio 2.0
    assert expert_token_cap(8, 64, 4096, 2.0) == int(8 / 64.0 * 4096 * 2.0)
    assert expert_token_cap(2, 8, 100, 1.5) == 37  # int(0.25 · 100 · 1.5) = int(37.5)


def test_sequence_cap_keeps_each_experts_first_tokens_and_tops_up_nothing():
    from moeq.contract.recipe import BalanceSpec
    from moeq.quant_core.algorithms.balance import balance_tokens
    from moeq.quant_core.algorithms.experts import RoutedTokens
    from moeq.quant_core.quantized import QuantState

    # 12 main tokens + 4 reserve tokens, top-1 of 3 experts; expert 0 takes tokens 0, 2, 4, 6, 8, 10, 12, 14
    index = torch.tensor([[0], [1]] * 6 + [[0], [2], [0], [2]])
    weights = torch.rand(16, 1, generator=torch.Generator().manual_seed(0))
    tokens = RoutedTokens(torch.randn(16, 4), index, weights)
    spec = BalanceSpec(r=2.0, cap="sequence", select="first", extra_samples=0)
    state = QuantState()
    # cap = int(1/3 · 6 · 2) = 4
    out = balance_tokens(tokens, 12, 3, spec, state, 0, seq_len=6)
    per = out.per_expert(3)
    assert per[0][0].tolist() == [0, 2, 4, 6]  # first-come, not the highest gate weights
    assert per[1][0].tolist() == [1, 3, 5, 7]
    assert per[2][0].tolist() == []  # expert 2 only appears in the reserve: no top-up under the authors' cap
    assert state.diagnostics["balance"]["0"]["target"] == 4


def test_eaquant_preset_is_the_released_configuration():
    from moeq.contract.presets import expand, merge
    from moeq.contract.recipe import parse_recipe
    from moeq.contract.techniques import RtnConfig, SmoothConfig

    r = parse_recipe(merge(expand(["eaquant"]), {"model": "m", "weights": {"bits": 4}, "activations": {"bits": 4}}))
    smooth = r.technique(SmoothConfig)
    assert smooth.aggregate == "expert" and not smooth.include_router
    rtn = r.technique(RtnConfig)
    assert rtn.clip_search and (rtn.clip_min, rtn.clip_steps) == (0.35, 101)
    assert r.weights.group_size is None and not r.weights.symmetric
    assert (r.router.mode, r.router.search, r.router.symmetric, r.router.bits, r.router.act_bits) == (
        "align", "single", False, 8, 8)
    bal = r.calibration.balance
    assert (bal.cap, bal.select, bal.extra_samples, bal.smoothing) == ("sequence", "first", 0, False)


@pytest.mark.parametrize("family", ["olmoe", "deepseek_v3"])
def test_eaquant_preset_searches_the_router_on_the_mean_sequence(tiny_zoo, tmp_path, family):
    from moeq.contract.presets import expand, merge
    from tests.quant_core.helpers import quantize_tiny

    recipe = merge(expand(["eaquant"]), {"weights": {"bits": 4}, "activations": {"bits": 8},
                                         "calibration": {"source": "random", "samples": 4, "seq_len": 32}})
    fast = {"duquant": {"rotation_steps": 8, "max_tokens": 64}, "rtn": {"clip_steps": 6}}  # same paths, fewer steps
    recipe["techniques"] = [{**t, **fast.get(t["name"], {})} for t in recipe["techniques"]]
    recipe["router"]["clip_steps"] = 11
    fp, q, moe, state = quantize_tiny(tiny_zoo, family, recipe, tmp_path)
    align = state.diagnostics["router_align"]
    assert align and all(d["search"] == "single" and d["tokens"] == 32 for d in align.values())
    for layer, bal in state.diagnostics["balance"].items():
        block = moe.blocks[int(layer)]
        k = block.routing_rule().top_k
        assert bal["target"] == max(1, int(k / block.num_experts * 32 * 2.0))
        assert max(bal["after"]) <= bal["target"]
    from moeq.quant_core.algorithms.duquant import diagnostics

    sites = diagnostics(state)["sites"]  # what a result's diagnostics["transforms"] reports
    assert any(site.endswith("experts.in.N") for site in sites) and any(".down.N" in site for site in sites)
    assert sum(sites.values()) == len(state.transforms)
    for block in moe.blocks.values():  # one ratio for the whole router: asymmetric 8-bit rows
        assert max(len(torch.unique(row)) for row in block.router.weight.data) <= 256


def _kl(fp, q, ids) -> float:
    with torch.no_grad():
        p = torch.log_softmax(fp(input_ids=ids).logits.double(), -1)
        r = torch.log_softmax(q(input_ids=ids).logits.double(), -1)
    return float((p.exp() * (p - r)).sum(-1).mean())


@pytest.mark.parametrize("family", ["olmoe", "qwen2_moe", "deepseek_v3"])
def test_per_expert_input_transforms_leave_the_model_unchanged_at_w16a16(tiny_zoo, tmp_path, family):
    """One transform per routed expert fitted on its routed tokens, one for the router, one per shared
    expert; folded into the weights and replayed at inference, so at W16A16 the function is unchanged."""
    from tests.quant_core.helpers import quantize_tiny

    recipe = {"techniques": [{"name": "duquant", "moe_input": "expert", "rotation_steps": 8, "max_tokens": 64}],
              "weights": {"bits": 16}, "activations": {"bits": 16}}
    fp, q, moe, state = quantize_tiny(tiny_zoo, family, recipe, tmp_path)
    spec = moe.spec
    for i, block in moe.blocks.items():
        key = f"{spec.layers}.{i}.{spec.mlp}.{spec.experts}"
        ins = [state.transforms[f"{key}.in.{e}"] for e in range(block.num_experts)]
        assert f"{key}.in" not in state.transforms  # no transform shared by router and experts
        assert f"{spec.layers}.{i}.{spec.mlp}.{spec.router}" in state.transforms
        assert len({id(t) for t in ins}) == block.num_experts
    ids = torch.randint(4, fp.config.vocab_size, (2, 32), generator=torch.Generator().manual_seed(1))
    assert _kl(fp, q, ids) < 1e-5


def test_per_expert_input_transform_is_fitted_on_that_experts_routed_tokens():
    """Oracle: expert e's transform is the DuQuant fit of its own routed rows (all rows when it got
    fewer than MIN_TOKENS), and folding it into expert e's gate/up only leaves x·Wᵀ unchanged."""
    from moeq.contract.techniques import DuQuantConfig
    from moeq.quant_core.algorithms.duquant import MIN_TOKENS, expert_input_transforms, subsample
    from moeq.quant_core.functional.duquant import fit_transform

    class Group:  # the two experts' gate/up weights [n, out, in], as MoEBlock.experts.gate_up() gives them
        def __init__(self, w):
            self.w = w

        def gate_up(self):
            return self.w

    class Block:  # what the fold reaches: block.experts, block.num_experts
        def __init__(self, w):
            self.experts, self.num_experts = Group(w), int(w.shape[0])

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 8, generator=gen, dtype=torch.float64)
    x[:20, 3] *= 20  # expert 0's tokens have an outlier channel, expert 1 got too few tokens
    xs = [x[:20], x[20:20 + MIN_TOKENS - 1]]
    w = torch.randn(2, 6, 8, generator=gen, dtype=torch.float64)
    w0 = w.clone()
    cfg = DuQuantConfig(block_size=4, rotation_steps=8, max_tokens=64)
    ts = expert_input_transforms(Block(w), xs, x, cfg)
    for e, rows in ((0, xs[0]), (1, x)):
        ref = fit_transform(subsample(rows.float(), 64, cfg.seed + e), 4, 8, cfg.seed + e)
        probe = torch.randn(5, 8, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(ts[e](probe), ref(probe))
        torch.testing.assert_close(ts[e](probe) @ w[e].T, probe @ w0[e].T)


def test_per_expert_input_transforms_survive_save_and_reload(tiny_zoo, tmp_path):
    from transformers import AutoTokenizer

    from moeq.contract.recipe import parse_recipe
    from moeq.quant_core.io.load import check_probe, load_quantized
    from moeq.quant_core.io.save import save_quantized
    from tests.quant_core.helpers import SMALL_CALIB, quantize_tiny

    recipe = {"techniques": [{"name": "duquant", "moe_input": "expert", "rotation_steps": 8, "max_tokens": 64},
                             {"name": "rtn"}],
              "weights": {"bits": 4, "group_size": None}, "activations": {"bits": 8}}
    fp, q, moe, state = quantize_tiny(tiny_zoo, "qwen2_moe", recipe, tmp_path)
    tok = AutoTokenizer.from_pretrained(tiny_zoo / "tiny-qwen2_moe")
    full = parse_recipe({"model": "tiny-qwen2_moe", "calibration": SMALL_CALIB, **recipe})
    save_quantized(tmp_path / "out", q, tok, state, full, {})
    assert check_probe(load_quantized(tmp_path / "out"), tmp_path / "out")


def test_per_expert_input_transforms_refuse_gptq_in_one_line():
    from moeq.contract.errors import RecipeError
    from moeq.contract.recipe import parse_recipe

    with pytest.raises(RecipeError) as exc:
        parse_recipe({"model": "m", "techniques": [{"name": "duquant", "moe_input": "expert"}, "gptq"]})
    assert "moe_input" in str(exc.value) and "\n" not in str(exc.value)


@pytest.fixture()
def mha_zoo(tiny_zoo, tmp_path):
    """A zoo whose tiny-olmoe has as many KV heads as query heads (the tiny models group KV heads, where
    v→o smoothing does not apply), with fresh seeded weights."""
    import shutil

    from transformers import AutoConfig, AutoModelForCausalLM

    src, zoo = tiny_zoo / "tiny-olmoe", tmp_path / "mha-zoo"
    shutil.copytree(src, zoo / "tiny-olmoe")
    config = AutoConfig.from_pretrained(src)
    config.num_key_value_heads = config.num_attention_heads
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(zoo / "tiny-olmoe")
    return zoo


@pytest.mark.parametrize("grouped_kv", [True, False])
def test_v_o_smoothing_is_exact_and_skipped_only_under_grouped_kv_heads(tiny_zoo, mha_zoo, tmp_path, grouped_kv):
    from moeq.quant_core.adapters.model import get_path
    from tests.quant_core.helpers import quantize_tiny

    zoo = tiny_zoo if grouped_kv else mha_zoo
    recipe = {"techniques": [{"name": "smooth", "v_o": True}], "weights": {"bits": 16}, "activations": {"bits": 16}}
    fp, q, moe, state = quantize_tiny(zoo, "olmoe", recipe, tmp_path)
    layer = moe.layers[0]
    v = get_path(layer, next(k for k in moe.spec.attn_inputs if k.endswith("v_proj")))
    o = get_path(layer, moe.spec.attn_output)
    assert (v.weight.shape == o.weight.shape) == (not grouped_kv)
    assert ("v_o" in state.diagnostics["smoothing"]["0"]) == (not grouped_kv)
    ids = torch.randint(4, fp.config.vocab_size, (2, 32), generator=torch.Generator().manual_seed(1))
    assert _kl(fp, q, ids) < 1e-5
