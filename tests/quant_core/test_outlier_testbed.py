"""testbed-outliers can tell techniques apart: its outliers survive norm folding, RTN W4A4 clearly
degrades against W4A16, and DuQuant recovers at least half of that gap (thresholds from the issue)."""

from __future__ import annotations

import pytest
import torch

from quant_core.adapters.model import MoEModel
from quant_core.calibration.data import token_windows
from quant_core.model_io import load_model, resolve_model
from quant_core.presets import expand
from tests.conftest import run_on_testbed

W4 = {"bits": 4, "group_size": None, "symmetric": False}


@torch.no_grad()
def _folded_input_channel_max(moe: MoEModel, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per channel max |x| at every attention and MoE input, with the norm weights folded away
    (x = h / rms(h), what the linears read once the norm scale lives in their weights)."""
    out: dict[str, torch.Tensor] = {}
    handles = []
    for i in range(len(moe.layers)):
        for key, norm in ((f"attn{i}", moe.input_norm(i)), (f"moe{i}", moe.post_attn_norm(i))):
            def hook(mod, args, key=key):
                h = args[0].float().reshape(-1, args[0].shape[-1])
                x = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + mod.variance_epsilon)
                out[key] = x.abs().amax(0)
            handles.append(norm.register_forward_pre_hook(hook))
    try:
        moe.model(input_ids=ids)
    finally:
        for h in handles:
            h.remove()
    return out


def test_outliers_survive_norm_folding(testbed_ctx):
    path = resolve_model("testbed-outliers", testbed_ctx)
    model, tok = load_model(path, testbed_ctx)
    ids = token_windows("auto", "heldout", tok, 8, 256, 5)
    for key, cmax in _folded_input_channel_max(MoEModel(model), ids).items():
        ratio = float(cmax.max() / cmax.median())
        assert ratio >= 10.0, f"{key}: largest channel only {ratio:.1f}× the median channel"


@pytest.mark.slow
def test_rtn_w4a4_degrades_and_duquant_recovers_half_the_gap(testbed_ctx):
    a16 = run_on_testbed(testbed_ctx, "testbed-outliers", weights=W4, techniques=["rtn"])
    a4 = run_on_testbed(testbed_ctx, "testbed-outliers", weights=W4, activations={"bits": 4}, techniques=["rtn"])
    du = run_on_testbed(testbed_ctx, "testbed-outliers", weights=W4, activations={"bits": 4},
                        **expand(["duquant"]))
    kl16, kl4, kl_du = (r["metrics"]["kl"] for r in (a16, a4, du))
    assert kl4 >= 3.0 * kl16, (kl4, kl16)
    assert kl_du <= kl4 - 0.5 * (kl4 - kl16), (kl_du, kl4, kl16)
