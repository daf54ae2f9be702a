"""DuQuant: transform math (hand-checked), function preservation at W16A16 on every family and every
smoothing path, save/reload, and the block-size error."""

from __future__ import annotations

import pytest
import torch

from moeq.contract.errors import RecipeError
from moeq.quant_core.functional.duquant import BlockTransform, block_for, fit_transform, greedy_rotation, \
    spreading_rotation, zigzag_permutation
from moeq.contract.presets import expand, merge
from tests.conftest import FAMILIES
from tests.quant_core.helpers import quantize_tiny


def test_spreading_rotation_is_orthogonal_and_spreads_the_channel_evenly():
    R = spreading_rotation(2, 4, torch.Generator().manual_seed(0))
    assert torch.allclose(R @ R.T, torch.eye(4, dtype=torch.float64), atol=1e-12)
    x = torch.tensor([[0.0, 0.0, 8.0, 0.0]], dtype=torch.float64)  # one outlier channel
    assert (x @ R).tolist()[0] == pytest.approx([4.0, 4.0, 4.0, 4.0])  # 8/√4 in every channel


def test_greedy_rotation_keeps_the_best_prefix_and_lowers_the_peak():
    x = torch.tensor([[0.0, 0.0, 8.0, 0.0], [1.0, -1.0, 0.0, 1.0]], dtype=torch.float64)
    R, peaks = greedy_rotation(x, 4, steps=8, gen=torch.Generator().manual_seed(0))
    assert peaks[0] == 8.0 and min(peaks) < 8.0
    assert float((x @ R).abs().max()) == pytest.approx(min(peaks))
    assert torch.allclose(R @ R.T, torch.eye(4, dtype=torch.float64), atol=1e-12)


def test_zigzag_deals_large_channels_to_blocks_in_zigzag_order():
    # channel maxima → order by size: ch1 (9), ch3 (7), ch4 (5), ch2 (3), ch5 (2), ch0 (1)
    # blocks of 2 → 3 blocks; zigzag: b0←ch1, b1←ch3, b2←ch4, b2←ch2, b1←ch5, b0←ch0
    perm = zigzag_permutation(torch.tensor([1.0, 9.0, 3.0, 7.0, 5.0, 2.0]), 2)
    assert perm.tolist() == [1, 0, 3, 5, 4, 2]


def test_block_transform_is_orthogonal_and_preserves_linears():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 16, generator=g)
    x[:, 3] *= 30.0
    t = fit_transform(x, 8, 64)
    M = t.matrix()
    assert torch.allclose(M @ M.T, torch.eye(16, dtype=torch.float64), atol=1e-10)
    w = torch.randn(5, 16, generator=g)
    assert torch.allclose(t(x) @ t(w).T, x @ w.T, atol=1e-3)
    assert float(t(x).abs().max()) < 0.6 * float(x.abs().max())  # the outlier channel is spread out
    again = BlockTransform.from_tensors(t.tensors())
    assert torch.allclose(again(x), t(x), atol=1e-5)


def test_block_for_whole_input_when_small_and_error_when_not_dividing():
    assert block_for(64, 128) == 64 and block_for(256, 128) == 128
    with pytest.raises(ValueError):
        block_for(192, 128)


def _kl(fp, q, ids) -> float:
    with torch.no_grad():
        p = torch.log_softmax(fp(input_ids=ids).logits.double(), -1)
        r = torch.log_softmax(q(input_ids=ids).logits.double(), -1)
    return float((p.exp() * (p - r)).sum(-1).mean())


W16A16 = {"weights": {"bits": 16}, "activations": {"bits": 16}}
FAST = {"name": "duquant", "rotation_steps": 16, "max_tokens": 64}  # same code path, fewer greedy steps
SMOOTH_PATHS = {
    "duquant preset (SmoothQuant over router, experts, shared experts)": expand(["duquant"]),
    "expert-aware aggregation + down_proj + balance": merge(
        {"techniques": [{"name": "smooth", "aggregate": "expert", "down_proj": True}, FAST]},
        {"calibration": {"balance": {"r": 2.0, "extra_samples": 4}}}),
    "router-only smoothing": {"techniques": [{"name": "smooth", "aggregate": "router"}, FAST]},
}


@pytest.mark.parametrize("path", list(SMOOTH_PATHS))
@pytest.mark.parametrize("family", FAMILIES)
def test_duquant_at_w16a16_leaves_the_model_unchanged(tiny_zoo, tmp_path, family, path):
    recipe = merge(SMOOTH_PATHS[path], W16A16)
    recipe["techniques"] = [FAST if t.get("name") == "duquant" else t for t in recipe["techniques"]]
    fp, q, moe, state = quantize_tiny(tiny_zoo, family, recipe, tmp_path)
    assert state.transforms, "no transform was installed"
    # every linear was really transformed (weights moved) and the function did not change
    ref = fp.state_dict()
    changed = [k for k, p in q.state_dict().items() if p.dim() >= 2 and k in ref and not torch.equal(p, ref[k])]
    for part in ("experts.gate_up_proj", "experts.down_proj", "o_proj", ".gate."):
        assert any(part in k for k in changed), f"no {part} weight was transformed"
    ids = torch.randint(4, fp.config.vocab_size, (2, 32), generator=torch.Generator().manual_seed(1))
    assert _kl(fp, q, ids) < 1e-5


def test_duquant_reload_reproduces_outputs(tiny_zoo, tmp_path):
    from moeq.quant_core.io.load import check_probe, load_quantized
    from moeq.quant_core.io.save import save_quantized
    from moeq.contract.recipe import parse_recipe

    recipe = merge({"techniques": [{"name": "smooth"}, FAST, {"name": "rtn"}]},
                   {"weights": {"bits": 4, "group_size": None}, "activations": {"bits": 8}})
    fp, q, moe, state = quantize_tiny(tiny_zoo, "qwen2_moe", recipe, tmp_path)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_zoo / "tiny-qwen2_moe")
    full = parse_recipe({"model": "tiny-qwen2_moe", **recipe})
    save_quantized(tmp_path / "out", q, tok, state, full, {})
    loaded = load_quantized(tmp_path / "out")
    assert check_probe(loaded, tmp_path / "out")


def test_block_size_that_does_not_divide_the_hidden_size_is_one_line_recipe_error(tiny_zoo):
    from moeq.quant_core.adapters.model import MoEModel
    from moeq.contract.recipe import parse_recipe
    from moeq.quant_core.validate import validate_for_model
    from tests.conftest import load_tiny

    moe = MoEModel(load_tiny(tiny_zoo, "mixtral"))  # hidden size 64
    base = {"model": "tiny-mixtral", "weights": {"bits": 4, "group_size": None}}
    recipe = parse_recipe({**base, "techniques": [{"name": "duquant", "block_size": 48}]})
    with pytest.raises(RecipeError) as err:
        validate_for_model(recipe, moe)
    msg = str(err.value)
    assert "duquant.block_size" in msg and "divide" in msg and "64" in msg and "\n" not in msg
    validate_for_model(parse_recipe({**base, "techniques": [{"name": "duquant", "block_size": 32}]}), moe)
