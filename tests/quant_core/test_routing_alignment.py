"""EAQuant's router alignment loss and the family-aware routing rules, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from moeq.quant_core.functional import RoutingRule, router_alignment_loss
from moeq.quant_core.functional.routing import gate_weights, route, select_experts
from tests.conftest import FAMILIES, load_tiny


def _softmax(z):
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


def _partial_kl(p, q, idx):
    return sum(p[j] * (math.log(p[j]) - math.log(q[j])) for j in idx)


def test_issue_example_full_softmax_kl_at_fp_top_m():
    # an expert outside the FP top-2 that jumps to top-1 must cost something (renormalized top-m KL: 0)
    loss = float(router_alignment_loss([3.0, 2.0, 0.0, 0.0], [3.0, 2.0, 5.0, 0.0], m=2, lam=0.0))
    assert loss == pytest.approx(1.670, abs=1e-3)
    assert loss == pytest.approx(_partial_kl(_softmax([3, 2, 0, 0]), _softmax([3, 2, 5, 0]), [0, 1]), abs=1e-5)


def test_lambda_adds_mse_of_all_logits_and_tokens_are_averaged():
    z_fp = torch.tensor([[3.0, 2.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    z_q = torch.tensor([[3.0, 2.0, 5.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    kl = router_alignment_loss(z_fp, z_q, m=2, lam=0.0)
    assert float(kl) == pytest.approx(1.670 / 2, abs=1e-3)  # second token is unchanged
    both = router_alignment_loss(z_fp, z_q, m=2, lam=0.1)
    assert float(both - kl) == pytest.approx(0.1 * 25.0 / 8, abs=1e-6)  # one logit off by 5, 8 logits


def _sig(v):
    return 1.0 / (1.0 + math.exp(-v))


def test_sigmoid_router_uses_bias_for_selection_and_normalized_sigmoid_scores():
    z_fp, z_q = [2.0, 0.0, -1.0, 1.0], [1.0, 0.0, -1.0, 2.0]
    bias = torch.tensor([0.0, 0.0, 0.0, 0.5])  # without it expert 0 is chosen; with it expert 3
    rule = RoutingRule(top_k=1, score="sigmoid")
    assert select_experts(torch.tensor([z_fp]), rule, 1, bias).tolist() == [[3]]
    assert select_experts(torch.tensor([z_fp]), rule, 1, None).tolist() == [[0]]
    p = [_sig(v) / sum(map(_sig, z_fp)) for v in z_fp]
    q = [_sig(v) / sum(map(_sig, z_q)) for v in z_q]
    got = float(router_alignment_loss(z_fp, z_q, 1, 0.0, rule, bias))
    assert got == pytest.approx(_partial_kl(p, q, [3]), abs=1e-6)
    assert got != pytest.approx(float(router_alignment_loss(z_fp, z_q, 1, 0.0, rule, None)), abs=1e-3)


def test_group_limited_selection_keeps_only_the_best_groups():
    # DeepSeek-V3: groups {0,1} and {2,3}; group score = sum of its two best (biased) scores
    z = torch.tensor([[2.0, -2.0, 1.0, 1.0]])
    rule = RoutingRule(top_k=2, score="sigmoid", n_group=2, topk_group=1, group_score="top2_sum")
    # group 0: σ(2)+σ(−2) = 1.0 < group 1: 2σ(1) = 1.462 → experts 2, 3 although expert 0 scores highest
    assert sorted(select_experts(z, rule).tolist()[0]) == [2, 3]
    assert select_experts(z, RoutingRule(top_k=2, score="sigmoid")).tolist()[0][0] == 0
    _, w = route(z, RoutingRule(top_k=2, score="sigmoid", n_group=2, topk_group=1, group_score="top2_sum",
                                norm_topk_prob=True, scaling=2.5))
    assert w.tolist()[0] == pytest.approx([1.25, 1.25], abs=1e-6)


def test_norm_topk_prob_changes_gate_weights_not_the_alignment_distribution():
    z_fp, z_q = [3.0, 2.0, 0.0, 0.0], [3.0, 2.0, 5.0, 0.0]
    norm = RoutingRule(top_k=2, norm_topk_prob=True)
    plain = RoutingRule(top_k=2, norm_topk_prob=False)
    # the paper's KL is over the full softmax, so renormalizing the top-k weights does not change it
    assert float(router_alignment_loss(z_fp, z_q, 2, 0.0, norm)) == pytest.approx(1.670, abs=1e-3)
    idx = torch.tensor([[0, 1]])
    p = _softmax(z_fp)
    assert gate_weights(torch.tensor([z_fp]), idx, norm).tolist()[0] == pytest.approx(
        [p[0] / (p[0] + p[1]), p[1] / (p[0] + p[1])], abs=1e-6)
    assert gate_weights(torch.tensor([z_fp]), idx, plain).tolist()[0] == pytest.approx(p[:2], abs=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_adapter_rule_reproduces_the_family_router(tiny_zoo, family):
    """The rule built from the adapter (families as data) gives the experts and weights the model's
    own MoE block dispatches — the same scoring alignment, calibration and metrics rely on."""
    from moeq.quant_core.adapters.dispatch import DispatchRecorder
    from moeq.quant_core.adapters.model import MoEModel

    model = load_tiny(tiny_zoo, family)
    moe = MoEModel(model)
    ids = torch.randint(4, model.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    with DispatchRecorder(moe, keep_inputs=False) as rec, torch.no_grad():
        model(input_ids=ids)
    for i, block in moe.blocks.items():
        d = rec.take(i)
        index, weights = route(d.logits, block.routing_rule(), block.routing_bias())
        order_fp, order_ours = d.index.sort(-1), index.sort(-1)
        assert torch.equal(order_fp.values, order_ours.values), f"layer {i}: experts differ"
        assert torch.allclose(d.weights.gather(1, order_fp.indices), weights.gather(1, order_ours.indices),
                              atol=1e-5), f"layer {i}: gate weights differ"


@pytest.mark.parametrize("rule,lam,beta", [(RoutingRule(top_k=2), 0.0, 0.0), (RoutingRule(top_k=2), 0.05, 0.5),
                                           (RoutingRule(top_k=2, score="sigmoid", norm_topk_prob=True,
                                                        n_group=4, topk_group=2), 0.01, 0.0)])
def test_clip_search_picks_each_rows_exact_loss_minimum(rule, lam, beta):
    """The clip search scores the grid in closed form; every row's clip must be a minimum of the
    loss itself (router_alignment_loss) with the other rows fixed."""
    from moeq.quant_core.algorithms.router import align_clips
    from moeq.quant_core.functional.affine import compute_params, fake_quant
    from moeq.contract.recipe import RouterSpec

    g = torch.Generator().manual_seed(1)
    w, x = torch.randn(8, 32, generator=g), torch.randn(600, 32, generator=g)
    x_q = x + 0.05 * torch.randn(600, 32, generator=g)
    bias = 0.1 * torch.randn(8, generator=g) if rule.score == "sigmoid" else None
    spec = RouterSpec(mode="align", bits=3, lam=lam, beta=beta, clip_steps=21)
    clips, diag = align_clips(w, x, x_q, spec, rule, bias, sweeps=1)
    assert diag["after"]["objective"] <= diag["before"]["objective"]
    z_fp = x @ w.T
    grid = torch.linspace(spec.clip_min, 1.0, spec.clip_steps)
    e = w.shape[0] - 1  # the last row updated: the others are at their final clips
    losses = []
    for c in grid:
        trial = clips.clone()
        trial[e] = c
        z_q = x_q @ fake_quant(w, compute_params(w, 3, None, True, trial)).T
        losses.append(float(router_alignment_loss(z_fp, z_q, diag["top_m"], lam, rule, bias)))
    assert losses[int((grid - clips[e]).abs().argmin())] <= min(losses) + 1e-6
    assert math.isclose(diag["after"]["objective"], min(losses), rel_tol=1e-5, abs_tol=1e-7)
