"""The quantized model's MoE forward runs the fused mixed-bit kernel when kernels are on (MOEQ_KERNELS=triton;
here under the Triton interpreter with the GPU's operand rounding emulated): every layer call stays within the
kernel's error model on the model's own activations, the logits follow the torch path, the result JSON says which
backend ran, and a reload through the kernel is bitwise repeatable."""

from __future__ import annotations

import torch

from moeq.quant_core.adapters.model import MoEModel
from moeq.quant_core.modules import QuantExperts, kernel_report
from tests.kernels.error_model import UNIT_ROUNDOFF, assert_within, magnitudes, moe_bound
from tests.quant_core.helpers import quantize_tiny

RECIPE = {"weights": {"bits": 4, "group_size": 32}, "allocation": {"method": "random", "avg_bits": 3.0,
                                                                   "tiers": [2, 3, 4], "other_bits": 8}}


def test_kernel_path_is_within_the_error_model_on_a_mixed_bit_model(tiny_zoo, tmp_path):
    _, torch_model, torch_moe, _ = quantize_tiny(tiny_zoo, "mixtral", RECIPE, tmp_path)
    _, kernel_model, kernel_moe, _ = quantize_tiny(tiny_zoo, "mixtral", RECIPE, tmp_path, kernels="triton")
    calls = []
    for block in kernel_moe.moe_blocks():
        mod = block.experts.module
        assert isinstance(mod, QuantExperts) and mod.kernel is not None
        assert len(mod.kernel[0].widths) >= 2  # several bit widths in one layer, one launch
        mod.register_forward_hook(lambda m, args, out: calls.append((m, args, out)))
    ids = torch.randint(4, 100, (1, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref, out = torch_model(ids).logits, kernel_model(ids).logits
    assert calls
    mags = {}
    for m, (x, idx, w), y in calls:
        mags.setdefault(id(m), tuple(magnitudes(k) for k in m.kernel))
        exact, bound = moe_bound(x, idx, w, *m.kernel, UNIT_ROUNDOFF[torch.bfloat16], mags=mags[id(m)])
        assert_within(y, exact, bound, "model layer")
    rel = ((out - ref).norm() / ref.norm()).item()
    assert rel < 2 * len(calls) * 2 ** -8  # the bf16 activation operand's roundoff per kernel layer, doubled
    report = kernel_report(kernel_model, "triton")
    assert report["moe"] == "triton" and report["moe_forward_calls"]["triton"] == len(calls)
    assert kernel_report(torch_model, "auto")["moe"] == "torch"
    assert isinstance(torch_moe, MoEModel)


def test_reload_with_kernels_is_bitwise_repeatable_and_follows_the_torch_path(tiny_zoo, tmp_path):
    from moeq.quant_core.api import run
    from moeq.quant_core.context import RunContext
    from moeq.quant_core.io.load import load_quantized

    save = tmp_path / "saved"
    recipe = {"model": "tiny-qwen2_moe", "weights": {"bits": 4, "group_size": 32}, "techniques": ["rtn"],
              "eval": {"source": "random", "tasks": [], "ppl_windows": 1, "seq_len": 16}}
    result = run(recipe, RunContext(zoo_dir=tiny_zoo, cache_dir=tmp_path / "cache", save_dir=save))
    assert result["environment"]["kernels"]["moe"] == "torch"  # auto on CPU
    plain = load_quantized(save, kernels="torch")
    fused = load_quantized(save, kernels="triton")
    assert all(isinstance(b.experts.module, QuantExperts) for b in fused.moe.moe_blocks())
    # the packed weights replace the dequantized ones (MOEQ_KERNELS=triton: every forward runs the kernel)
    assert all(b.experts.module.gate_up_proj.numel() == 0 for b in fused.moe.moe_blocks())
    ids = torch.randint(4, 100, (1, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b, ref = fused.model(ids).logits, fused.model(ids).logits, plain.model(ids).logits
    assert torch.equal(a, b)  # fixed-order combine: no atomics
    n_layers = len(list(fused.moe.moe_blocks()))
    assert ((a - ref).norm() / ref.norm()).item() < 2 * n_layers * 2 ** -8
