"""MoQE router mechanics and EBSS sampler mechanics on tiny models (effects are tested on testbeds)."""

from __future__ import annotations

import torch

from quant_core.adapters.model import MoEModel
from quant_core.calibration.ebss import ebss_windows, start_tokens, usage_std
from quant_core.context import RunContext
from quant_core.moqe.router import MoqeRouter, balance_term, train_router
from quant_core.recipe import CalibrationSpec, EbssSpec
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


def test_ebss_windows_start_from_successive_vocab_tokens_and_are_cached(tiny_zoo, tmp_path):
    from transformers import AutoTokenizer

    path = tiny_zoo / "tiny-mixtral"
    moe = MoEModel(load_tiny(tiny_zoo, "mixtral"))
    tok = AutoTokenizer.from_pretrained(path)
    ctx = RunContext(zoo_dir=tiny_zoo, cache_dir=tmp_path)
    spec = CalibrationSpec(samples=6, seq_len=20, sampler="ebss", ebss=EbssSpec(width=3))
    windows, info = ebss_windows(moe, tok, spec, 0, ctx, path)
    assert windows.shape == (6, 20)
    assert windows[:, 0].tolist() == [tok.bos_token_id] * 6
    assert windows[:, 1].tolist() == start_tokens(tok, 6)
    assert not info["ebss"]["cached"]
    again, info2 = ebss_windows(moe, tok, spec, 0, ctx, path)
    assert info2["ebss"]["cached"] and torch.equal(again, windows)


def test_usage_std_of_even_and_concentrated_counts():
    even = torch.ones(1, 2, 8)
    one_hot = torch.zeros(1, 2, 8)
    one_hot[..., 0] = 5
    assert float(usage_std(even)) == 0.0
    assert float(usage_std(one_hot)) > 0.3
