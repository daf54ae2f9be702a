"""The full 2^b symmetric grid survives save → plain checkpoint, and the bit accounting of an
equal-bits baseline (allocation "uniform": experts at weights.bits, the rest at other_bits)."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from moeq.quant_core.api import run
from moeq.quant_core.context import RunContext
from tests.quant_core.helpers import quantize_tiny

EVAL = {"source": "random", "tasks": [], "ppl_windows": 1, "seq_len": 16}


def _bins(group: torch.Tensor) -> int:
    """How many of the four 2-bit codes RTN on the full grid must use for this FP group: signed code
    c = clamp(round(w/s), −2, 1) with s = 2·max|w|/3 (round half to even, as torch)."""
    s = 2 * group.abs().max() / 3
    return len(set(torch.clamp(torch.round(group / s), -2, 1).tolist()))


def test_two_bit_rtn_groups_of_every_expert_use_four_values_where_the_weights_allow(tiny_zoo, tmp_path, moeq_home):
    save = tmp_path / "saved"
    run({"model": "tiny-mixtral", "weights": {"bits": 2, "group_size": 16, "symmetric": True},
         "techniques": ["rtn"], "eval": EVAL},
        RunContext(zoo_dir=tiny_zoo, cache_dir=tmp_path / "cache", save_dir=save))
    fp = load_file(str(tiny_zoo / "tiny-mixtral" / "model.safetensors"))  # same on-disk names
    saved = load_file(str(save / "model.safetensors"))  # the plain dequantized HF checkpoint
    keys = [k for k in saved if ".experts." in k and saved[k].dim() >= 2]
    assert keys
    n_groups = four = 0
    for k in keys:
        q = saved[k].float().reshape(-1, 16)
        w = fp[k].float().reshape(-1, 16)
        for qg, wg in zip(q, w):
            distinct = len(set(qg.tolist()))
            assert distinct == _bins(wg), k
            n_groups += 1
            four += distinct == 4
    # a group misses the extra code −2 only when its largest-magnitude weight is positive
    assert four > 0.3 * n_groups


def test_uniform_baseline_puts_experts_at_weight_bits_and_the_rest_at_other_bits(tiny_zoo, tmp_path):
    _, q, moe, state = quantize_tiny(tiny_zoo, "qwen2_moe", {
        "weights": {"bits": 2, "group_size": 16}, "techniques": ["rtn"],
        "allocation": {"method": "uniform", "other_bits": 4}}, tmp_path)
    n_expert = n_other = 0
    for rec in state.records.values():
        bits = set(rec.per_matrix_bits().reshape(-1).tolist())
        if rec.role in ("experts_gate_up", "experts_down"):
            assert bits == {2}
        else:
            assert bits == {4}, rec.key
    for name, p in q.named_parameters():  # parameter counts straight from the model
        if p.dim() < 2 or "embed" in name or "lm_head" in name or name.endswith("mlp.gate.weight") \
                or "shared_expert_gate" in name:
            continue
        if ".mlp.experts." in name:
            n_expert += p.numel()
        else:
            n_other += p.numel()
    summary = state.bits_summary()
    assert summary["avg_expert_bits"] == 2.0
    assert abs(summary["avg_weight_bits"] - (2 * n_expert + 4 * n_other) / (n_expert + n_other)) < 1e-12
    assert summary["avg_expert_bits_with_overhead"] > 2.0 and summary["avg_weight_bits_with_overhead"] > \
        summary["avg_weight_bits"]
