"""DuQuant's smoothing factor sources as released (Hsu1023/DuQuant 1b425e8, quantize/duquant.py): the
q/k/v factor from q_proj's input statistics and q_proj's weight alone, the gate/up factor from up_proj's
— against a re-typed copy of the authors' per-pair formula; EAQuant's (darren-fzq1/EAQuant 37c4509,
quantize/smooth.py `get_scale`) takes the maximum over every reader's weight."""

from __future__ import annotations

import copy

import pytest
import torch

from moeq.contract.techniques import SmoothConfig
from moeq.quant_core.adapters.model import MoEModel, get_path
from moeq.quant_core.algorithms.capture import InputStats
from moeq.quant_core.algorithms.smoothing import moe_smoothing_factors, smooth_attention
from moeq.quant_core.functional.smooth import column_absmax
from moeq.quant_core.quantized import QuantState
from tests.conftest import load_tiny

ALPHA = 0.6


def _authors_scale(act: torch.Tensor, weights: list[torch.Tensor], alpha: float) -> torch.Tensor:
    """The authors' factor, re-typed: activation scale and column max of the weight(s) (rows stacked:
    one weight for DuQuant's pairs, every reader for EAQuant's get_scale), each clamped at 1e-5."""
    act = act.float().clamp(min=1e-5)
    w = torch.cat([x.float() for x in weights], dim=0).abs().max(dim=0)[0].clamp(min=1e-5)
    return (act.pow(alpha) / w.pow(1 - alpha)).clamp(min=1e-5)


def test_the_retyped_formula_on_a_hand_checked_input():
    act = torch.tensor([4.0, 1.0])
    q = torch.tensor([[1.0, -4.0], [0.5, 2.0]])  # column maxima 1, 4
    k = torch.tensor([[-16.0, 0.25]])  # column maxima 16, 0.25
    # α = 1/2: s = √act / √w — q alone: √4/√1 = 2, √1/√4 = 1/2; q and k: √4/√16 = 1/2, √1/√4 = 1/2
    assert _authors_scale(act, [q], 0.5).tolist() == [2.0, 0.5]
    assert _authors_scale(act, [q, k], 0.5).tolist() == [0.5, 0.5]


def _attention_factor(model, readers: str) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Run moeq's attention smoothing on layer 0 with given input maxima; returns (act, factor, FP readers)."""
    moe = MoEModel(model)
    fp = {k: m.weight.data.clone() for k, m in moe.attn_inputs(0).items()}
    act = torch.rand(next(iter(fp.values())).shape[1], generator=torch.Generator().manual_seed(0)) * 8 + 0.1
    stats = {k: InputStats(absmax=act.clone()) for k in fp}
    smooth_attention(moe, 0, stats, SmoothConfig(alpha=ALPHA, readers=readers), QuantState())
    first = next(iter(fp))
    factor = column_absmax(moe.attn_inputs(0)[first].weight.data) / column_absmax(fp[first])
    return act, factor, fp


@pytest.mark.parametrize("family", ["olmoe", "qwen2_moe"])
def test_attention_factor_reads_q_proj_alone_or_every_reader(tiny_zoo, family):
    model = load_tiny(tiny_zoo, family)
    act, s_q, fp = _attention_factor(copy.deepcopy(model), "q_up")
    assert next(iter(fp)).endswith("q_proj")
    assert torch.allclose(s_q, _authors_scale(act, [fp[next(iter(fp))]], ALPHA), rtol=1e-4)
    act, s_all, fp = _attention_factor(model, "all")
    assert torch.allclose(s_all, _authors_scale(act, list(fp.values()), ALPHA), rtol=1e-4)
    assert not torch.allclose(s_q, s_all, rtol=1e-3)  # the choice matters on this input


def _up_weights(block, spec) -> list[torch.Tensor]:
    up = block.experts.gate_up()[:, block.experts.up_rows()]
    shared = [] if block.shared is None else [get_path(block.shared, "up_proj").weight.data]
    return [*up, *shared]


def _all_readers(block, spec) -> list[torch.Tensor]:
    out = [block.router.weight.data, *block.experts.gate_up()]
    if block.shared is not None:
        out += [get_path(block.shared, n).weight.data for n in ("gate_proj", "up_proj")]
    if block.shared_gate is not None:
        out.append(block.shared_gate.weight.data)
    return out


@pytest.mark.parametrize("family", ["mixtral", "qwen2_moe"])
def test_moe_factor_reads_the_up_projections_alone_or_every_reader(tiny_zoo, family):
    moe = MoEModel(load_tiny(tiny_zoo, family))
    block = next(iter(moe.blocks.values()))
    x = torch.randn(64, block.router.weight.shape[1], generator=torch.Generator().manual_seed(1))
    x[:, 3] *= 20  # one outlier channel, as smoothing is meant for
    act = x.abs().amax(0)
    s_up = moe_smoothing_factors(block, x, SmoothConfig(alpha=ALPHA, readers="q_up"), moe.spec)
    s_all = moe_smoothing_factors(block, x, SmoothConfig(alpha=ALPHA), moe.spec)
    assert torch.allclose(s_up, _authors_scale(act, _up_weights(block, moe.spec), ALPHA), rtol=1e-4)
    assert torch.allclose(s_all, _authors_scale(act, _all_readers(block, moe.spec), ALPHA), rtol=1e-4)
    assert not torch.allclose(s_up, s_all, rtol=1e-3)


def test_duquant_preset_takes_the_released_sources_and_eaquant_every_reader():
    from moeq.contract.presets import expand, merge
    from moeq.contract.recipe import parse_recipe

    def smooth(preset: str) -> SmoothConfig:
        return parse_recipe(merge(expand([preset]), {"model": "m", "weights": {"bits": 4},
                                                     "activations": {"bits": 4}})).technique(SmoothConfig)

    assert smooth("duquant").readers == "q_up"
    assert smooth("eaquant").readers == "all"
    assert SmoothConfig().readers == "all"  # moeq's all-readers maximum stays the default
