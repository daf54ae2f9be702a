"""MoQE router mechanics and EBSS sampler mechanics on tiny models (effects are tested on testbeds)."""

from __future__ import annotations

import pytest
import torch

from moeq.quant_core.adapters.model import MoEModel
from moeq.quant_core.calibration.ebss import ebss_windows, start_tokens, usage_sigma
from moeq.quant_core.context import RunContext
from moeq.quant_core.moqe.router import MoqeRouter, balance_term, train_router
from moeq.contract.recipe import CalibrationSpec, EbssSpec
from tests.conftest import load_tiny


def test_balance_term_is_one_for_even_usage_and_grows_with_imbalance():
    even = torch.full((8, 4), 0.25)
    skewed = torch.tensor([[0.97, 0.01, 0.01, 0.01]] * 8)
    assert float(balance_term(even)) == 1.0
    assert float(balance_term(skewed)) > 2.0


def test_router_learns_labels_that_depend_on_the_input_and_routes_deterministically():
    torch.manual_seed(0)
    emb = torch.randn(50, 16)
    ids = torch.randint(10, 50, (128, 12))
    ids[:64, :3] = 1  # a marker token: these samples are best served by variant 1
    labels = torch.zeros(128, dtype=torch.long)
    labels[:64] = 1
    router = MoqeRouter(emb, 2, layers=1, width=32, heads=4, pad_id=0)
    losses = train_router(router, ids, labels, epochs=40, alpha=0.02, lr=3e-3)
    assert losses[-1] < losses[0]
    picks = router.choose(ids)
    assert float((picks == labels).float().mean()) > 0.9
    assert torch.equal(picks, router.choose(ids))  # deterministic at inference


def test_router_ignores_padding():
    torch.manual_seed(0)
    router = MoqeRouter(torch.randn(20, 8), 3, width=16, heads=2, pad_id=0)
    a = torch.tensor([[5, 6, 7, 0, 0]])
    b = torch.tensor([[5, 6, 7, 0, 0, 0, 0]])
    torch.testing.assert_close(router(a), router(b))


def test_ebss_windows_start_from_random_seeded_vocab_tokens_and_are_cached(tiny_zoo, tmp_path):
    from transformers import AutoTokenizer

    path = tiny_zoo / "tiny-mixtral"
    moe = MoEModel(load_tiny(tiny_zoo, "mixtral"))
    tok = AutoTokenizer.from_pretrained(path)
    ctx = RunContext(zoo_dir=tiny_zoo, cache_dir=tmp_path)
    spec = CalibrationSpec(samples=6, seq_len=20, sampler="ebss", ebss=EbssSpec(width=3))
    windows, info = ebss_windows(moe, tok, spec, 0, ctx, path)
    assert windows.shape == (6, 20)
    assert windows[:, 0].tolist() == [tok.bos_token_id] * 6
    assert windows[:, 1].tolist() == start_tokens(tok, 6, 0)
    assert start_tokens(tok, 6, 0) != start_tokens(tok, 6, 1)
    assert len(set(start_tokens(tok, 6, 0))) == 6 and not set(start_tokens(tok, 6, 0)) & set(tok.all_special_ids)
    assert not info["ebss"]["cached"]
    again, info2 = ebss_windows(moe, tok, spec, 0, ctx, path)
    assert info2["ebss"]["cached"] and torch.equal(again, windows)


def test_usage_sigma_is_algorithm_1_formula():
    """Hand-computed: counts (3, 1, 0, 0) → u = (.75, .25, 0, 0), μ = .25, Σ(u−μ)² = .375,
    σ = √(4/3 · .375) = √.5; a second layer (1, 1, 1, 1) has σ 0, so the layer mean is √.5 / 2."""
    one = torch.tensor([[[3.0, 1.0, 0.0, 0.0]]])
    torch.testing.assert_close(usage_sigma(one), torch.tensor([0.5 ** 0.5]))
    two = torch.tensor([[[3.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]])
    torch.testing.assert_close(usage_sigma(two), torch.tensor([0.5 ** 0.5 / 2]))
    one_hot = torch.zeros(1, 2, 8)
    one_hot[..., 0] = 5
    torch.testing.assert_close(usage_sigma(one_hot), torch.tensor([1.0]))  # Σ(u−μ)² = 7/8, σ = √(8/7·7/8)


@pytest.mark.parametrize("usage", ["count", "fraction"])
def test_ebss_scores_each_candidate_by_its_own_routing_new_token_included(tiny_zoo, usage):
    """One step of the sampler against full forwards: from [BOS, f] the w most likely next tokens v are
    the candidates; each is scored by −log p(v)/2 + σ(routing of f and v)/τ (its own usage, computed
    here without the KV cache); the lowest score wins."""
    import torch.nn.functional as F
    from transformers import AutoTokenizer

    from moeq.quant_core.adapters.dispatch import DispatchRecorder
    from moeq.quant_core.calibration.ebss import _sample_group

    model = load_tiny(tiny_zoo, "mixtral")
    moe = MoEModel(model)
    tok = AutoTokenizer.from_pretrained(tiny_zoo / "tiny-mixtral")
    first, w, tau = start_tokens(tok, 6, 0), 4, 0.05
    got = _sample_group(moe, first, tok.bos_token_id, 3, w, tau, torch.device("cpu"), lambda f: None,
                        usage=usage)
    picks = []
    for f, row in zip(first, got):
        with torch.no_grad():
            logp = F.log_softmax(model(torch.tensor([[tok.bos_token_id, f]])).logits[0, -1], dim=-1)
        lp, cands = logp.topk(w)
        scores = []
        for v, l in zip(cands.tolist(), lp.tolist()):
            with DispatchRecorder(moe) as rec, torch.no_grad():
                model(torch.tensor([[tok.bos_token_id, f, v]]))
            counts = torch.stack([rec.take(i).index.reshape(3, -1)[1:].reshape(-1).bincount(minlength=8).float()
                                  for i in sorted(moe.blocks)])
            scores.append(-l / 2 + float(usage_sigma(counts[None], usage)) / tau)
        picks.append(min(range(w), key=scores.__getitem__))
        assert row.tolist() == [tok.bos_token_id, f, cands[picks[-1]].item()]
    assert any(p != 0 for p in picks)  # the balance term overrode the most likely token somewhere


def test_moqe_router_trains_on_windows_after_every_variants_calibration(tiny_zoo):
    from transformers import AutoTokenizer

    from moeq.quant_core.calibration.data import token_windows
    from moeq.quant_core.streams import router_windows
    from moeq.contract.recipe import moqe_variants, parse_recipe

    tok = AutoTokenizer.from_pretrained(tiny_zoo / "tiny-mixtral")
    recipe = parse_recipe({"model": "tiny-mixtral", "calibration": {"samples": 8, "seq_len": 64},
                           "eval": {"seq_len": 32},
                           "moqe": {"variants": [{"weights": {"bits": 2}},
                                                 {"weights": {"bits": 3}, "calibration": {"samples": 12}}],
                                    "train_samples": 10}})
    train, info = router_windows(recipe, moqe_variants(recipe), tok)
    assert train.shape == (10, 32) and info["skipped_tokens"] == 12 * 63
    calib = token_windows("auto", "calib", tok, 12, 64, 0)[:, 1:].reshape(-1)  # the larger variant's tokens
    stream = token_windows("auto", "calib", tok, 200, 32, 0)[:, 1:].reshape(-1)
    assert torch.equal(stream[: calib.numel()], calib)  # one stream, prefix-stable
    start = info["skipped_windows"] * 31
    assert start >= calib.numel()
    assert torch.equal(train[:, 1:].reshape(-1), stream[start:start + 10 * 31])
