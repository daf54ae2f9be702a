"""testbed-outliers (issue 17 acceptance, thresholds from the issue): its activation outliers survive
norm folding, they make RTN W4A4 clearly worse than W4A16, and DuQuant recovers a clear part.
Loads the shipped weights; nothing is retrained here."""

from __future__ import annotations

import torch

from moeq.quant_core.adapters.model import MoEModel
from moeq.quant_core.algorithms.rotation import fold_norms
from moeq.quant_core.calibration.data import token_windows
from moeq.quant_core.model_io import load_model, resolve_model
from moeq.quant_core.zoo.outliers import channel_peaks
from moeq.contract.presets import PRESETS
from tests.conftest import run_on_testbed

W4 = {"bits": 4, "group_size": None, "symmetric": False}


def test_outlier_channels_survive_norm_folding(testbed_ctx):
    path = resolve_model("testbed-outliers", testbed_ctx)
    model, tok = load_model(path, testbed_ctx)
    moe = MoEModel(model)
    windows = token_windows("auto", "heldout", tok, 8, 256, 0)
    with torch.no_grad():
        before = model(windows).logits
    fold_norms(moe)
    with torch.no_grad():
        assert torch.allclose(model(windows).logits, before, atol=1e-3, rtol=1e-3)  # folding kept the function
    for i in range(len(moe.layers)):
        assert torch.all(moe.input_norm(i).weight == 1) and torch.all(moe.post_attn_norm(i).weight == 1)
    peaks = channel_peaks(model, moe, windows)
    assert len(peaks) == 2 * len(moe.layers)
    for name, p in peaks.items():
        assert float(p.max()) >= 10 * float(p.median()), f"{name}: max {p.max():.3f} median {p.median():.3f}"


def test_rtn_w4a4_degrades_and_duquant_recovers_at_least_half(testbed_ctx):
    w4a16 = run_on_testbed(testbed_ctx, "testbed-outliers", weights=W4, techniques=["rtn"])
    w4a4 = run_on_testbed(testbed_ctx, "testbed-outliers", weights=W4, activations={"bits": 4}, techniques=["rtn"])
    duq = run_on_testbed(testbed_ctx, "testbed-outliers", weights=W4, activations={"bits": 4},
                         techniques=PRESETS["duquant"]["techniques"])
    kl16, kl4, kl_duq = (r["metrics"]["kl"] for r in (w4a16, w4a4, duq))
    assert kl4 >= 3 * kl16, (kl4, kl16)
    assert kl_duq <= kl4 - 0.5 * (kl4 - kl16), (kl_duq, kl4, kl16)


def test_outlier_fine_tune_is_deterministic(testbed_ctx, tmp_path):
    """The builder path (`--retrain`), shortened to 2 steps: same seed and threads → same weights.
    (Two steps do not repair the planted model; what the full fine-tune yields is tested above.)"""
    import json

    from safetensors.torch import load_file

    from moeq.quant_core.zoo.outliers import finetune_outliers
    from moeq.quant_core.zoo.testbed import META_FILE

    base = resolve_model("testbed-mixtral", testbed_ctx)
    a = finetune_outliers(base, tmp_path / "a", steps=2)
    b = finetune_outliers(base, tmp_path / "b", steps=2)
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    meta = json.loads((a / META_FILE).read_text())
    assert meta["steps"] == 2 and meta["spec"]["channel"] == 42 and meta["build_cpu_s"] > 0
