"""EBSS balances expert usage on testbed-mixtral: at the default τ its sets spread the routed tokens
over the experts more evenly (lower σ of per-expert counts) than plain corpus windows and than the
same generator with the balance term off (τ → ∞). Figures over 3 seeds at 32×128:
benchmarks/ebss_balance.py, docs/methods.md "MoEQuant"."""

from __future__ import annotations

import statistics

import pytest
import torch

from moeq.contract.recipe import CalibrationSpec, EbssSpec
from moeq.quant_core.adapters.dispatch import DispatchRecorder
from moeq.quant_core.adapters.model import MoEModel
from moeq.quant_core.calibration.data import token_windows
from moeq.quant_core.calibration.ebss import ebss_windows
from moeq.quant_core.model_io import load_model, resolve_model

SEQUENCES, LENGTH = 16, 64


def _spread(moe: MoEModel, windows: torch.Tensor) -> float:
    """Mean over MoE layers of the standard deviation over experts of routed-token counts (BOS left out)."""
    counts = {i: torch.zeros(b.num_experts) for i, b in moe.blocks.items()}
    with DispatchRecorder(moe, device=None) as rec, torch.no_grad():
        rec.clear()
        moe.model(input_ids=windows)
        for i in counts:
            idx = rec.take(i).index.reshape(windows.shape[0], windows.shape[1], -1)[:, 1:].reshape(-1)
            counts[i] += torch.bincount(idx, minlength=counts[i].numel()).float()
    return statistics.mean(float(c.std()) for c in counts.values())


@pytest.mark.slow  # three EBSS/corpus sets on testbed-mixtral: 30 s alone, minutes on the shared 2-core box
def test_ebss_sets_spread_expert_usage_more_evenly_than_corpus_text_and_than_no_balance_term(testbed_ctx):
    path = resolve_model("testbed-mixtral", testbed_ctx)
    model, tok = load_model(path, testbed_ctx)
    moe = MoEModel(model)

    def ebss(tau: float | None) -> torch.Tensor:
        ebss_cfg = EbssSpec(cache=False) if tau is None else EbssSpec(cache=False, tau=tau)
        spec = CalibrationSpec(samples=SEQUENCES, seq_len=LENGTH, sampler="ebss", ebss=ebss_cfg)
        return ebss_windows(moe, tok, spec, 0, testbed_ctx, path)[0]

    default = _spread(moe, ebss(None))
    no_balance = _spread(moe, ebss(1e9))
    plain = _spread(moe, token_windows("auto", "calib", tok, SEQUENCES, LENGTH, 0))
    assert default < plain and default < no_balance, (default, plain, no_balance)
