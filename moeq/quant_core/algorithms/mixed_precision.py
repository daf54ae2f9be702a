"""Expert-wise bit allocation from the router alone (router-norm mixed precision, arXiv 2604.06515),
following the authors' allocation code (docs/methods.md "Router-norm mixed precision").

Score: ‖w_e‖_final (the authors' code) or ‖w_e‖_final − ‖w_e‖_init per router row; a smaller score
means *more* bits. Variance of an expert: the variance of the input weights of its gate neuron with
the largest L2 norm. Guard: walking the ranking from the fewest-bits end, an expert moves up to the
first (highest-ranked) position whose expert has ζ·v below its own v. Budget: two tiers give the top
round(κ·n) experts b_h, κ = (b_avg − b_l)/(b_h − b_l); three evenly spaced tiers start from the two
tiers around b_avg and trade pairs of middle experts into one low + one high while the region of
b_avg allows (see `tier_counts`). Same tier counts in every layer.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from moeq.quant_core.adapters.model import MoEModel
from moeq.contract.errors import RecipeError
from moeq.quant_core.quantized import QuantState
from moeq.contract.recipe import AllocationSpec

log = logging.getLogger(__name__)
INITIAL_ROUTER_FILE = "initial_router.safetensors"


def _clamp01(x: float) -> float:
    return max(0.0, min(1.0, x))


def three_tier_counts(n: int, avg: float, lo: int, mid: int, hi: int) -> tuple[int, int, int]:
    """(n_lo, n_mid, n_hi) of the authors' three-level policy.

    Start from the two tiers around `avg` (mid/hi when avg ≥ mid, else lo/mid); the range [lo, hi] is
    cut in thirds: in the top third every pair of middle experts is traded into one low and one high
    expert; in the middle third pairs are traded while the middle tier keeps at least as many experts
    as were promoted to high; in the bottom third nothing is traded."""
    if hi - mid != mid - lo:
        raise RecipeError("allocation.tiers", f"three tiers must be evenly spaced, got {[lo, mid, hi]}")
    if avg >= mid:
        n_hi = int(round(_clamp01((avg - mid) / (hi - mid)) * n))
        n_mid, n_lo = n - n_hi, 0
    else:
        n_mid = int(round(_clamp01((avg - lo) / (mid - lo)) * n))
        n_lo, n_hi = n - n_mid, 0
    base_hi = n_hi
    span = hi - lo
    region = "high" if avg > hi - span / 3 else "middle" if avg >= hi - 2 * span / 3 else "low"
    if region == "low":
        return n_lo, n_mid, n_hi
    while n_mid >= 2:
        if region == "middle" and n_mid - 2 < n_hi + 1 - base_hi:
            break
        n_lo, n_mid, n_hi = n_lo + 1, n_mid - 2, n_hi + 1
    return n_lo, n_mid, n_hi


def tier_counts(n: int, spec: AllocationSpec) -> dict[int, int]:
    """How many experts of a layer get each tier (the authors' two- and three-level policies)."""
    tiers = spec.tiers
    lo, hi = tiers[0], tiers[-1]
    if len(tiers) == 3:
        n_lo, n_mid, n_hi = three_tier_counts(n, spec.avg_bits, lo, tiers[1], hi)
        return {lo: n_lo, tiers[1]: n_mid, hi: n_hi}
    n_hi = int(round(_clamp01((spec.avg_bits - lo) / (hi - lo)) * n))
    return {lo: n - n_hi, hi: n_hi}


def _router_key(moe: MoEModel, i: int) -> str:
    spec = moe.blocks[i].spec
    return f"{spec.layers}.{i}.{spec.mlp}.{spec.router}.weight"


def _initial_routers(moe: MoEModel, spec: AllocationSpec, model_dir: Path) -> dict[int, torch.Tensor] | None:
    """Initial router rows per layer for score 'norm_change' (every layer checked up front), else None."""
    if spec.method != "router_norm" or spec.score == "final_norm":
        return None
    path = Path(model_dir) / INITIAL_ROUTER_FILE
    if not path.is_file():
        raise RecipeError("allocation.score", f"'norm_change' needs the initial router weights ({path} is missing); "
                          "use 'final_norm'")
    from safetensors.torch import load_file

    init = load_file(str(path))
    out = {}
    for i in moe.blocks:
        key = _router_key(moe, i)
        if key not in init:
            raise RecipeError("allocation.score", f"{path} has no initial router for layer {i} ({key})")
        out[i] = init[key]
    return out


def layer_score(moe: MoEModel, i: int, init: dict[int, torch.Tensor] | None) -> torch.Tensor:
    final = moe.blocks[i].router_weight().float().norm(dim=1)
    return final if init is None else final - init[i].float().norm(dim=1)


def gate_rows(moe: MoEModel, i: int) -> torch.Tensor:
    """[n, intermediate, hidden] gate-projection weights of layer i's routed experts."""
    group = moe.blocks[i].experts
    return group.gate_up()[:, : group.intermediate_size] if group.concatenated else group.gate_up()[:, 0::2]


def neuron_variance(moe: MoEModel, i: int) -> torch.Tensor:
    """v_e = sample variance of the input weights of the gate neuron with the largest L2 norm, per expert."""
    g = gate_rows(moe, i).float()
    top = torch.linalg.vector_norm(g, dim=-1).argmax(dim=-1)  # [n] index of the largest-norm neuron
    row = g.gather(1, top[:, None, None].expand(-1, 1, g.shape[-1]))[:, 0]  # [n, hidden]
    return row.var(dim=-1)


def guarded_ranking(scores: torch.Tensor, variance: torch.Tensor, zeta: float) -> list[int]:
    """Experts from most to fewest bits: ascending score, then the variance guard — each expert, taken
    in order from the fewest-bits end of the score ranking, moves up to the first position of the
    current order whose expert e' has ζ·v_e' < v_e (if that position is above its own)."""
    by_score = torch.argsort(scores, stable=True).tolist()
    v = [float(x) for x in variance]
    order = list(by_score)
    for e in reversed(by_score):
        target = next((k for k, other in enumerate(order) if zeta * v[other] < v[e]), None)
        if target is not None and order.index(e) > target:
            order.remove(e)
            order.insert(target, e)
    return order


def _assign(order: list[int], counts: dict[int, int]) -> torch.Tensor:
    bits = torch.empty(len(order), dtype=torch.int64)
    pos = 0
    for tier in sorted(counts, reverse=True):
        for e in order[pos:pos + counts[tier]]:
            bits[e] = tier
        pos += counts[tier]
    return bits


class Allocator:
    """Bits of one MoE layer at a time (a streamed run calls `layer(i)` while layer i is loaded);
    `record` stores the diagnostics. Layers must come in order (the random method's generator)."""

    def __init__(self, moe: MoEModel, spec: AllocationSpec, model_dir: Path) -> None:
        self.moe, self.spec = moe, spec
        self.t0 = time.perf_counter()
        self.gen = torch.Generator().manual_seed(spec.seed)
        self.init = _initial_routers(moe, spec, model_dir)  # a missing initial router fails before any work
        self.diag: dict[str, list[dict]] = {}
        self.counts: dict[int, int] = {}

    @property
    def needs_expert_weights(self) -> bool:
        return self.spec.method != "random"

    def layer(self, i: int, variance: torch.Tensor | None = None) -> torch.Tensor:
        """Layer i's bits; `variance` (per expert, as `neuron_variance`) when the caller computed it
        without the experts loaded (a streamed run reads them a chunk at a time)."""
        spec, n = self.spec, self.moe.blocks[i].num_experts
        self.counts = tier_counts(n, spec)
        var = score = None
        if spec.method == "random":
            order = torch.randperm(n, generator=self.gen).tolist()
        else:
            score = layer_score(self.moe, i, self.init)
            var = neuron_variance(self.moe, i) if variance is None else variance
            order = guarded_ranking(score, var, spec.zeta)
        bits = _assign(order, self.counts)
        rank = {e: r for r, e in enumerate(order)}
        self.diag[str(i)] = [{"expert": e, "rank": rank[e], "bits": int(bits[e]),
                              "score": float(score[e]) if score is not None else None,
                              "variance": float(var[e]) if var is not None else None} for e in range(n)]
        return bits

    def record(self, state: QuantState, bits: dict[int, torch.Tensor]) -> None:
        state.diagnostics["allocation"] = {"method": self.spec.method, "layers": self.diag,
                                           "tier_counts": {str(k): v for k, v in self.counts.items()},
                                           "seconds": round(time.perf_counter() - self.t0, 4),
                                           "avg_expert_bits": float(torch.cat(list(bits.values())).float().mean())}


def allocate(moe: MoEModel, spec: AllocationSpec, model_dir: Path, state: QuantState) -> dict[int, torch.Tensor]:
    """Bits per expert per MoE layer under `spec` (router_norm or random); diagnostics in `state`."""
    alloc = Allocator(moe, spec, model_dir)
    out = {i: alloc.layer(i) for i in moe.blocks}
    alloc.record(state, out)
    return out
