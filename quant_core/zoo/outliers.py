"""A function-preserving way to give a model activation outlier channels (as real LLMs have):
scale a few channels of every RMSNorm weight by `factor` and divide the same input columns of the
linears reading that norm by `factor`. FP outputs are unchanged; activations entering the
linears now have large channels, which is what SmoothQuant/EAQuant smoothing is for."""

from __future__ import annotations

from pathlib import Path

import torch

from quant_core.adapters.model import MoEModel
from quant_core.algorithms.rotation import _readers

OUTLIER_CHANNELS = (3, 17, 42, 77, 101)
OUTLIER_FACTOR = 24.0


@torch.no_grad()
def inject_outlier_channels(moe: MoEModel, channels=OUTLIER_CHANNELS, factor: float = OUTLIER_FACTOR) -> None:
    idx = torch.tensor([c for c in channels if c < moe.config.hidden_size])
    for i in range(len(moe.layers)):
        for norm, post in ((moe.input_norm(i), False), (moe.post_attn_norm(i), True)):
            norm.weight.data[idx] *= factor
            for w in _readers(moe, i, post_attn=post):
                w[..., idx] /= factor


def build_outlier_variant(base_dir: Path, out_dir: Path) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    inject_outlier_channels(MoEModel(model))
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out_dir)
    return Path(out_dir)
