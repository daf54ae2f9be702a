"""The quantized model's MoE forward runs the fused mixed-bit kernel when kernels are on
(MOEQ_KERNELS=triton; here under the Triton interpreter) and matches the torch path."""

from __future__ import annotations

import torch

from quant_core.adapters.model import MoEModel
from quant_core.modules import QuantExperts
from tests.quant_core.helpers import quantize_tiny


def test_kernel_path_matches_the_torch_path_on_a_mixed_bit_model(tiny_zoo, tmp_path):
    recipe = {"weights": {"bits": 4, "group_size": 32}, "allocation": {"method": "random", "avg_bits": 3.0,
                                                                       "tiers": [2, 3, 4], "other_bits": 8}}
    _, torch_model, torch_moe, _ = quantize_tiny(tiny_zoo, "mixtral", recipe, tmp_path)
    _, kernel_model, kernel_moe, state = quantize_tiny(tiny_zoo, "mixtral", recipe, tmp_path, kernels="triton")
    for block in kernel_moe.moe_blocks():
        assert isinstance(block.experts.module, QuantExperts) and block.experts.module.kernel is not None
        assert len(block.experts.module.kernel[0].groups) >= 2  # several bit widths in one layer
    ids = torch.randint(4, 100, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref, out = torch_model(ids).logits, kernel_model(ids).logits
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert isinstance(torch_moe, MoEModel)


def test_reload_with_kernels_reproduces_the_saved_logits(tiny_zoo, tmp_path):
    from quant_core.api import run
    from quant_core.context import RunContext
    from quant_core.io.load import load_quantized

    save = tmp_path / "saved"
    recipe = {"model": "tiny-qwen2_moe", "weights": {"bits": 4, "group_size": 32}, "techniques": ["rtn"],
              "eval": {"source": "random", "tasks": [], "ppl_windows": 1, "seq_len": 16}}
    run(recipe, RunContext(zoo_dir=tiny_zoo, cache_dir=tmp_path / "cache", save_dir=save))
    plain = load_quantized(save, kernels="torch")
    fused = load_quantized(save, kernels="triton")
    assert all(isinstance(b.experts.module, QuantExperts) for b in fused.moe.moe_blocks())
    ids = torch.randint(4, 100, (1, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(fused.model(ids).logits, plain.model(ids).logits, rtol=1e-4, atol=1e-4)
