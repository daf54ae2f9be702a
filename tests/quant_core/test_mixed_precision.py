"""Router-norm allocation: ranking by score with the variance guard, tier budgets, equal counts per
layer, the random control, and speed on a 64-expert × 32-layer model."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from quant_core.adapters.model import MoEModel
from quant_core.algorithms.mixed_precision import (INITIAL_ROUTER_FILE, allocate, guarded_ranking,
                                                   tier_counts)
from quant_core.errors import RecipeError
from quant_core.quantized import QuantState
from quant_core.recipe import AllocationSpec
from tests.conftest import load_tiny


@pytest.mark.parametrize("n, avg, tiers", [(8, 2.5, (2, 3)), (64, 2.5, (2, 3, 4)), (16, 3.0, (2, 4)),
                                           (128, 2.25, (2, 3, 4)), (60, 3.5, (3, 4))])
def test_tier_counts_hit_the_average(n, avg, tiers):
    counts = tier_counts(n, AllocationSpec(avg_bits=avg, tiers=tiers))
    assert sum(counts.values()) == n and all(c >= 0 for c in counts.values())
    mean = sum(b * c for b, c in counts.items()) / n
    assert abs(mean - avg) <= (tiers[-1] - tiers[0]) / (2 * n) + 1e-9
    if len(tiers) == 3 and n >= 16:
        assert counts[tiers[1]] > 0


def test_three_uneven_tiers_are_rejected():
    with pytest.raises(RecipeError, match="evenly spaced"):
        tier_counts(8, AllocationSpec(avg_bits=3, tiers=(2, 3, 8)))


def test_smaller_norm_change_gets_more_bits_and_variance_guard_lifts_outliers():
    scores = torch.tensor([0.5, 0.1, 0.9, 0.3])
    var = torch.tensor([1.0, 1.0, 1.0, 1.0])
    assert guarded_ranking(scores, var, 3.0) == [1, 3, 0, 2]
    var = torch.tensor([1.0, 1.0, 10.0, 1.0])  # expert 2 has a high-variance neuron: moves to the top
    assert guarded_ranking(scores, var, 3.0) == [2, 1, 3, 0]


def test_allocation_uses_the_initial_router_when_asked(tiny_zoo, tmp_path):
    model = load_tiny(tiny_zoo, "qwen3_moe")
    moe = MoEModel(model)
    init = {f"model.layers.{i}.mlp.gate.weight": b.router_weight() * torch.linspace(0.5, 1.5, b.num_experts)[:, None]
            for i, b in moe.blocks.items()}
    save_file(init, str(tmp_path / INITIAL_ROUTER_FILE))
    spec = AllocationSpec(avg_bits=3.0, tiers=(2, 4), score="norm_change", zeta=1e9)
    state = QuantState()
    bits = allocate(moe, spec, tmp_path, state)
    for i, b in bits.items():
        change = moe.blocks[i].router_weight().norm(dim=1) - init[f"model.layers.{i}.mlp.gate.weight"].norm(dim=1)
        top = set(torch.argsort(change)[: int((b == 4).sum())].tolist())
        assert top == set(torch.nonzero(b == 4).reshape(-1).tolist())
    with pytest.raises(RecipeError, match="initial router"):
        allocate(moe, spec, tmp_path / "elsewhere", QuantState())


def test_random_control_has_the_same_tier_counts(tiny_zoo):
    moe = MoEModel(load_tiny(tiny_zoo, "olmoe"))
    spec = AllocationSpec(avg_bits=2.5, tiers=(2, 3, 4))
    rn = allocate(moe, spec, Path("."), QuantState())
    rnd = allocate(moe, AllocationSpec(avg_bits=2.5, tiers=(2, 3, 4), method="random", seed=3), Path("."), QuantState())
    for i in rn:
        assert torch.equal(rn[i].sort().values, rnd[i].sort().values)
    assert any(not torch.equal(rn[i], rnd[i]) for i in rn)


class _FakeExperts(torch.nn.Module):
    def __init__(self, n, d, inter):
        super().__init__()
        self.gate_up_proj = torch.nn.Parameter(torch.randn(n, 2 * inter, d))
        self.down_proj = torch.nn.Parameter(torch.randn(n, d, inter))
        self.act_fn = torch.nn.SiLU()


def test_allocation_of_64_experts_by_32_layers_takes_under_a_second(tiny_zoo):
    """A synthetic 32-layer, 64-expert model assembled from real adapter views."""
    moe = MoEModel(load_tiny(tiny_zoo, "olmoe"))
    template = next(iter(moe.blocks.values()))
    from dataclasses import replace

    from quant_core.adapters.model import ExpertGroup

    blocks = {}
    for i in range(32):
        router = torch.nn.Linear(256, 64, bias=False)
        blocks[i] = replace(template, layer_idx=i, router=router, experts=ExpertGroup(_FakeExperts(64, 256, 128)))
    moe.__dict__["blocks"] = blocks
    t = time.perf_counter()
    bits = allocate(moe, AllocationSpec(avg_bits=2.5, tiers=(2, 3, 4)), Path("."), QuantState())
    elapsed = time.perf_counter() - t
    assert len(bits) == 32 and all(b.shape == (64,) for b in bits.values())
    assert elapsed < 1.0, f"allocation took {elapsed:.2f}s"
