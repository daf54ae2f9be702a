"""The MoE techniques on the trained testbeds: each moves its own target, against the baseline it
modifies, at a setting where the baseline visibly degrades. Where a paper's claim does not
reproduce on the testbeds, the mechanism is tested instead and the numbers are in RESULTS.md."""

from __future__ import annotations

import pytest
import torch

from moeq.quant_core.adapters.dispatch import DispatchRecorder
from moeq.quant_core.adapters.model import MoEModel
from moeq.quant_core.calibration.data import token_windows
from moeq.quant_core.calibration.ebss import ebss_windows, usage_sigma
from moeq.quant_core.functional.gptq import gptq_quantize, hessian
from moeq.quant_core.model_io import load_model, resolve_model
from moeq.quant_core.pipeline import quantize_model
from moeq.contract.recipe import CalibrationSpec, EbssSpec, parse_recipe
from tests.conftest import run_on_testbed

W4A4 = {"weights": {"bits": 4, "group_size": None, "symmetric": False}, "activations": {"bits": 4}}


def _kl(r: dict) -> float:
    return r["metrics"]["kl"]


# Issue 17: testbed-outliers is now a fine-tuned model whose residual stream carries a massive channel
# on every token (docs/methods.md "testbed-outliers"); the three claims below were written for the old
# weight-rescale injection and do not hold on it (measured 2026-12-01, seed 0, default test settings).
# Kept as strict xfails so that a change that makes them hold is noticed. The claim that does hold —
# DuQuant (smoothing, then block transforms) removes >= 50 % of the RTN W4A4-vs-W4A16 gap — is in
# tests/zoo/test_outliers_testbed.py; numbers and reasons in benchmarks/RESULTS.md "EAQuant".
_OUTLIERS_XFAIL = "does not reproduce on the trained testbed-outliers (issue 17): see RESULTS.md"


@pytest.mark.xfail(strict=True, reason=f"{_OUTLIERS_XFAIL}; QuaRot W4A4 KL 16.5 vs RTN 0.174")
def test_rotation_rescues_w4a4_on_a_model_with_activation_outliers(testbed_ctx):
    plain = run_on_testbed(testbed_ctx, "testbed-outliers", **W4A4, techniques=["rtn"])
    rotated = run_on_testbed(testbed_ctx, "testbed-outliers", **W4A4, techniques=["rotation", "rtn"])
    assert _kl(rotated) < 0.5 * _kl(plain)


@pytest.mark.xfail(strict=True, reason=f"{_OUTLIERS_XFAIL}; W8A8 KL 0.0383 smoothed vs 0.0415 plain (0.92x, not 0.8x)")
def test_smoothquant_w8a8_beats_no_smoothing_with_outlier_channels(testbed_ctx):
    w8a8 = {"weights": {"bits": 8, "group_size": None}, "activations": {"bits": 8}}
    plain = run_on_testbed(testbed_ctx, "testbed-outliers", **w8a8, techniques=["rtn"])
    smooth = run_on_testbed(testbed_ctx, "testbed-outliers", **w8a8, techniques=["smoothquant", "rtn"])
    assert _kl(smooth) < 0.8 * _kl(plain)


@pytest.mark.xfail(strict=True, reason=f"{_OUTLIERS_XFAIL}; W4A4 KL 0.272 expert-aware vs 0.262 router-only")
def test_expert_aware_smoothing_beats_router_only_smoothing_at_w4a4(testbed_ctx):
    def run(aggregate: str) -> dict:
        return run_on_testbed(testbed_ctx, "testbed-outliers", **W4A4, techniques=[
            {"name": "smooth", "aggregate": aggregate, "alpha": 0.6}, {"name": "rtn", "clip_search": True}])
    expert, router_only = run("expert"), run("router")
    assert _kl(expert) < _kl(router_only)
    assert expert["diagnostics"]["smoothing"]["0"]["aggregate"] == "expert"


def test_router_alignment_raises_routing_agreement_over_plain_router_quantization(testbed_ctx):
    # 2-bit router: on the full 2^b grid (issue 16) plain 3-bit router quantization keeps agreement
    # 0.951 (0.932 on the old grid) and alignment's gain there shrank to +0.002; at 2 bits plain
    # quantization visibly degrades routing (0.875) and alignment measured 0.891.
    def run(mode: str) -> dict:
        return run_on_testbed(testbed_ctx, "testbed-mixtral", weights={"bits": 16}, techniques=[],
                              router={"mode": mode, "bits": 2, "act_bits": 8})
    plain, aligned = run("quantize"), run("align")
    agree = lambda r: r["metrics"]["routing"]["mean_topk_agreement"]  # noqa: E731
    assert agree(aligned) > agree(plain) + 0.005
    for diag in aligned["diagnostics"]["router_align"].values():
        assert diag["after"]["objective"] <= diag["before"]["objective"]


def test_calibration_balance_tops_up_rare_experts_and_lowers_their_reconstruction_error(testbed_ctx):
    """GPTQ W3 with a small calibration set: rare experts fall back to RTN unless balance tops them up."""
    path = resolve_model("testbed-mixtral", testbed_ctx)
    base = {"model": "testbed-mixtral", "weights": {"bits": 3, "group_size": None},
            "techniques": [{"name": "gptq", "min_tokens": 64}],
            "calibration": {"samples": 8, "seq_len": 256}}
    fp, tok = load_model(path, testbed_ctx)
    fp_moe = MoEModel(fp)
    held = token_windows("auto", "heldout", tok, 64, 256, 99)
    with DispatchRecorder(fp_moe, keep_inputs=True) as rec, torch.no_grad():
        fp(held)
    states, models = {}, {}
    for name, balance in (("plain", None), ("balanced", {"r": 2.0, "extra_samples": 48})):
        model, _ = load_model(path, testbed_ctx)
        recipe = parse_recipe({**base, "calibration": {**base["calibration"], "balance": balance}})
        states[name], _ = quantize_model(MoEModel(model), tok, recipe, testbed_ctx, torch.device("cpu"), path)
        models[name] = MoEModel(model)
    diag = states["balanced"].diagnostics["balance"]
    improved, compared = 0, 0
    for layer, info in diag.items():
        layer = int(layer)
        before, after, target = info["before"], info["after"], info["target"]
        rare = [e for e in range(len(before)) if before[e] < target / 4]
        d = rec.take(layer)
        for e in rare:
            assert after[e] >= min(target, before[e] + 1) or after[e] == before[e] == 0
            tok_e = (d.index == e).any(-1)
            if int(tok_e.sum()) < 8:
                continue
            x = d.inputs[tok_e]
            ref = fp_moe.blocks[layer].experts.expert_output(e, x)
            err = {k: float((m.blocks[layer].experts.expert_output(e, x) - ref).pow(2).sum() / ref.pow(2).sum())
                   for k, m in models.items()}
            compared += 1
            improved += err["balanced"] < err["plain"]
    assert compared >= 2 and improved >= 0.75 * compared


def test_affinity_guided_gptq_lowers_the_gate_weighted_output_error():
    """AGQ's objective: Σ_t c_t ‖(W − Q) x_t‖². With heterogeneous gate weights it must beat plain GPTQ."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(4, 48, 64, generator=g)
    X = torch.randn(4, 512, 64, generator=g) * torch.linspace(0.2, 2.0, 64)
    c = torch.rand(4, 512, generator=g) ** 3  # most tokens weakly routed, a few strongly
    H_plain = torch.stack([hessian(X[i]) for i in range(4)])
    H_agq = torch.stack([hessian(X[i], c[i]) for i in range(4)])
    plain = gptq_quantize(W, H_plain, 3, None, False).weight
    agq = gptq_quantize(W, H_agq, 3, None, False).weight

    def weighted_err(Q):
        return float(sum((c[i][:, None] * ((X[i] @ (W[i] - Q[i]).T) ** 2)).sum() for i in range(4)))
    assert weighted_err(agq) < weighted_err(plain)


def test_ebss_lowers_expert_usage_spread_below_corpus_text(testbed_ctx):
    """With τ scaled to the testbeds (8 experts, char tokens), EBSS calibration text spreads expert load
    more evenly than the same number of tokens of corpus text (τ=1.2 does not: see RESULTS.md)."""
    for name in ("testbed-mixtral", "testbed-shared"):
        path = resolve_model(name, testbed_ctx)
        model, tok = load_model(path, testbed_ctx)
        moe = MoEModel(model)
        spec = CalibrationSpec(samples=24, seq_len=128, sampler="ebss", ebss=EbssSpec(width=4, tau=0.02, cache=False))
        ebss, _ = ebss_windows(moe, tok, spec, 0, testbed_ctx)

        def spread(windows):
            with DispatchRecorder(moe) as rec, torch.no_grad():
                model(windows)
            counts = torch.stack([rec.take(i).counts(b.num_experts).float() for i, b in moe.blocks.items()])
            return float(usage_sigma(counts[None]))
        corpus = token_windows("auto", "calib", tok, 24, 128, 0)
        assert spread(ebss) < 0.95 * spread(corpus)
