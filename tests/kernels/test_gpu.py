"""On a CUDA device (pytest -m gpu; skipped elsewhere): every Triton kernel on the hardware against the same error
model the interpreter tests use, the MoE layer captured in a CUDA graph (no host sync), a quantized model through
the kernel, and the packed layer's memory against bf16."""

from __future__ import annotations

import pytest
import torch

from moeq.kernels.act_quant import act_quant, act_quant_ref
from moeq.kernels.configs import MoeConfig
from moeq.kernels.dequant_gemm import dequantize_packed, wxa16_gemm
from moeq.kernels.moe_gemm import fused_moe
from moeq.kernels.packing import pack, pack_ref, unpack
from tests.kernels.error_model import UNIT_ROUNDOFF, assert_within, gemm_bound, moe_bound
from tests.kernels.test_moe_kernel import CASES, _experts, _routing

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
CUDA = torch.device("cuda")


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_packing_and_act_quant_on_the_device(bits):
    codes = torch.randint(0, 2 ** bits, (64, 200), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    packed = pack(codes.to(CUDA), bits, backend="triton")
    assert torch.equal(packed.cpu(), pack_ref(codes, bits))
    assert torch.equal(unpack(packed, bits, 200, backend="triton").cpu(), codes)
    x = torch.randn(33, 300, generator=torch.Generator().manual_seed(1))
    for sym in (False, True):
        torch.testing.assert_close(act_quant(x.to(CUDA), 8, 0.9, sym, backend="triton").cpu(),
                                   act_quant_ref(x, 8, 0.9, sym), rtol=0, atol=1e-6)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_dense_wxa16_on_the_device(bits, dtype):
    from moeq.quant_core.functional.affine import compute_params, quantize

    w = torch.randn(96, 256, generator=torch.Generator().manual_seed(2))
    p = compute_params(w, bits, 64, False)
    packed = pack_ref(quantize(w, p), bits)
    x = torch.randn(17, 256, generator=torch.Generator().manual_seed(3)).to(dtype)
    y = wxa16_gemm(x.to(CUDA), packed.to(CUDA), p.scale.to(CUDA), p.zero.to(CUDA), bits, 64, backend="triton")
    wd = dequantize_packed(packed, p.scale, p.zero, bits, 256, 64)
    u = UNIT_ROUNDOFF[torch.float16 if dtype == torch.float16 else torch.bfloat16]
    ref = x.double() @ wd.double().T
    bound = gemm_bound(x.float(), wd, wd.abs(), u, both_rounded=True)
    if dtype != torch.float32:
        bound = bound + UNIT_ROUNDOFF[dtype] * (ref.abs() + bound)
    assert_within(y.cpu(), ref, bound, f"wxa16 {dtype}")


@pytest.mark.parametrize("tokens, d, inter, bits, top_k, group, cfg", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_moe_on_the_device_is_within_its_error_model(tokens, d, inter, bits, top_k, group, cfg, dtype):
    n = len(bits)
    gate_up, down = _experts(n, 2 * inter, d, bits, group, 0), _experts(n, d, inter, bits, group, 1)
    w, idx = _routing(tokens, n, top_k, tokens)
    x = torch.randn(tokens, d, generator=torch.Generator().manual_seed(2)).to(dtype)
    out = fused_moe(x.to(CUDA), idx.to(CUDA), w.to(CUDA), gate_up.to(CUDA), down.to(CUDA), backend="triton",
                    config=cfg)
    ref, bound = moe_bound(x.float(), idx, w, gate_up, down, UNIT_ROUNDOFF[torch.bfloat16], dtype)
    assert_within(out.cpu(), ref, bound, f"fused moe {dtype}")


def test_moe_layer_is_graph_capturable_and_repeatable():
    bits = [2, 3, 4, 8] * 4
    gate_up, down = _experts(16, 512, 256, bits, 128, 0), _experts(16, 256, 256, bits, 128, 1)
    gate_up, down = gate_up.to(CUDA), down.to(CUDA)
    w, idx = _routing(4, 16, 4, 0)
    x = torch.randn(4, 256, device=CUDA, dtype=torch.bfloat16)
    w, idx = w.to(CUDA), idx.to(CUDA)
    cfg = MoeConfig(16, 128, 2, 4, 3)
    eager = fused_moe(x, idx, w, gate_up, down, backend="triton", config=cfg)
    graph = torch.cuda.CUDAGraph()
    torch.cuda.synchronize()
    with torch.cuda.graph(graph):  # raises if anything syncs with the host
        captured = fused_moe(x, idx, w, gate_up, down, backend="triton", config=cfg)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(captured, eager)


def test_packed_layer_memory_against_bf16():
    """A Mixtral-shaped W4 layer (8 experts, d=4096, I=14336): packed bytes vs bf16 bytes, measured on the device."""
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    d, inter, n = 4096, 14336, 8
    codes = torch.randint(0, 16, (n, 2 * inter, d), dtype=torch.uint8)
    scales = torch.rand(n, 2 * inter, d // 128) + 0.5
    from moeq.kernels.moe_layout import MixedBitExperts

    packed = MixedBitExperts.from_codes(codes, scales, torch.full_like(scales, 8.0), [4] * n, 128).to(CUDA)
    used = torch.cuda.memory_allocated() - base
    bf16 = n * 2 * inter * d * 2
    assert used <= 0.35 * bf16, (used, bf16)


def test_quantized_model_runs_the_kernel_on_the_device(tiny_zoo, tmp_path):
    from moeq.quant_core.api import run
    from moeq.quant_core.context import RunContext
    from moeq.quant_core.io.load import load_quantized

    save = tmp_path / "saved"
    recipe = {"model": "tiny-qwen2_moe", "weights": {"bits": 4, "group_size": 32}, "techniques": ["rtn"],
              "eval": {"source": "random", "tasks": [], "ppl_windows": 1, "seq_len": 16}}
    result = run(recipe, RunContext(zoo_dir=tiny_zoo, cache_dir=tmp_path / "cache", save_dir=save, device="cuda",
                                    kernels="triton"))
    assert result["environment"]["kernels"]["moe"] == "triton"
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    plain = load_quantized(save, device="cuda", kernels="torch")
    plain_bytes = torch.cuda.memory_allocated() - base
    fused = load_quantized(save, device="cuda", kernels="triton")
    fused_bytes = torch.cuda.memory_allocated() - base - plain_bytes
    dense = sum(k.num_experts * k.out_features * k.in_features * plain.model.dtype.itemsize
                for b in fused.moe.moe_blocks() for k in b.experts.module.kernel)
    assert fused_bytes < plain_bytes  # the dense experts never reached the device
    print(f"tiny-qwen2_moe on {torch.cuda.get_device_name()}: torch path {plain_bytes} B, kernel path "
          f"{fused_bytes} B (dense experts {dense} B)")
    ids = torch.randint(4, 100, (1, 10), generator=torch.Generator().manual_seed(0)).to(CUDA)
    with torch.no_grad():
        a, b, ref = fused.model(ids).logits, fused.model(ids).logits, plain.model(ids).logits
    assert torch.equal(a, b)
    n_layers = len(list(fused.moe.moe_blocks()))
    assert ((a - ref).float().norm() / ref.float().norm()).item() < 2 * n_layers * 2 ** -8
