"""`testbed-outliers`: testbed-mixtral fine-tuned to carry massive, token-dependent activation
channels in its residual stream, like real LLMs do (docs/methods.md "Outlier testbed").

Construction: a few embedding channels are set to large values whose size and sign depend on the
token (so no per-channel factor can remove them), those embedding columns and every RMSNorm weight
are frozen (the norm cannot hide the channels from the quantizer, and folding the norm into the
next linears leaves them in place), and the rest of the model is fine-tuned briefly on the testbed
corpus to work with them. The channels travel down the residual stream, so every attention and MoE
input has channels far above the others even after norm folding.

The fine-tuned checkpoint is shipped (bf16, sha256 manifest, like the trained testbeds);
`build_outlier_testbed(..., retrain=True)` reproduces it from testbed-mixtral.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)

NAME = "testbed-outliers"
OUTLIER_CHANNELS = (3, 17, 42, 77)
OUTLIER_SCALE = 40.0  # × the embedding's RMS
FINETUNE_STEPS = 150
BATCH, SEQ_LEN, LR, SEED = 8, 256, 1e-3, 0


@torch.no_grad()
def plant_outlier_embeddings(model, channels=OUTLIER_CHANNELS, scale: float = OUTLIER_SCALE,
                             seed: int = SEED) -> torch.Tensor:
    """Overwrite embedding columns `channels` with token-dependent large values; returns them."""
    emb = model.get_input_embeddings().weight
    gen = torch.Generator().manual_seed(seed)
    rms = emb.float().pow(2).mean().sqrt()
    idx = torch.tensor(channels)
    mag = 0.25 + 1.5 * torch.rand(emb.shape[0], len(channels), generator=gen)
    sign = torch.where(torch.rand(emb.shape[0], len(channels), generator=gen) < 0.5, -1.0, 1.0)
    emb[:, idx] = (scale * rms * mag * sign).to(emb.dtype)
    return emb[:, idx].clone()


def finetune_outliers(base_dir: Path, out_dir: Path, steps: int = FINETUNE_STEPS, progress=None) -> Path:
    """Plant the outlier channels in testbed-mixtral and fine-tune the rest; writes an HF checkpoint."""
    from transformers import AutoModelForCausalLM

    from quant_core.zoo.testbed import META_FILE, training_batch
    from quant_core.zoo.tokenizer import build_tokenizer

    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    planted = plant_outlier_embeddings(model)
    idx = torch.tensor(OUTLIER_CHANNELS)
    for name, p in model.named_parameters():
        if "norm" in name:
            p.requires_grad_(False)
    emb = model.get_input_embeddings().weight
    emb.register_hook(lambda g: g.index_fill(1, idx, 0.0))  # keep the planted columns as they are
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0, betas=(0.9, 0.95))
    tokenizer = build_tokenizer()
    r = random.Random(SEED)
    model.train()
    t0, curve = time.perf_counter(), []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = LR * min(1.0, (step + 1) / 20)
        ids = training_batch(r, BATCH, SEQ_LEN, tokenizer)
        out = model(input_ids=ids, labels=ids, output_router_logits=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 25 == 0 or step == steps - 1:
            curve.append({"step": step, "loss": round(out.loss.item(), 4)})
            log.info("%s fine-tune step %d loss %.4f", NAME, step, out.loss.item())
        if progress is not None:
            progress(f"fine-tune {NAME}", (step + 1) / steps)
    model.eval()
    assert torch.equal(model.get_input_embeddings().weight[:, idx], planted)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    meta = {"name": NAME, "base": "testbed-mixtral", "channels": list(OUTLIER_CHANNELS), "scale": OUTLIER_SCALE,
            "steps": steps, "batch": BATCH, "seq_len": SEQ_LEN, "lr": LR, "seed": SEED, "loss_curve": curve,
            "build_s": round(time.perf_counter() - t0, 1), "torch": torch.__version__,
            "threads": torch.get_num_threads()}
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=1))
    return out_dir


def build_outlier_testbed(base_dir: Path, out_dir: Path, retrain: bool = False) -> Path:
    """Install the shipped fine-tuned checkpoint, or fine-tune it when `retrain` or nothing is shipped."""
    from quant_core.zoo.testbed import MANIFEST, WEIGHTS_DIR, install_shipped

    shipped = WEIGHTS_DIR / NAME
    if retrain or not (shipped / MANIFEST).is_file():
        return finetune_outliers(base_dir, out_dir)
    return install_shipped(shipped, Path(out_dir))
