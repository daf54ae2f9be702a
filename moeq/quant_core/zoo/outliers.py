"""testbed-outliers: testbed-mixtral fine-tuned to carry a massive residual-stream channel, as real
LLMs do (a few hidden dimensions with huge, token-dependent values that dominate the RMSNorm).

Why trained and not injected: a function-preserving rescale (norm weight ×f, reading columns ÷f) is
undone exactly by norm folding or by any per-channel factor, so it cannot tell techniques apart.
Here the outlier lives in the residual stream itself: after RMSNorm *without* its weight, one
channel still holds most of each token's energy, so every attention and MoE input has a channel
~10× larger than the others whatever is folded where. Construction (docs/methods.md
"testbed-outliers"):

1. plant: set channel c of every token embedding to a_t = κ·rms(e_t) (token-dependent), κ large
   enough that channel c holds ≈ `energy` of the residual's energy at the norm inputs; rescale
   every RMSNorm weight by the median rms'/rms (channel c → 0). The scale is right on average but
   the norms no longer normalize per token, so this alone breaks the model (LM loss 0.6 → 17);
2. fine-tune on the corpus with the LM loss plus an auxiliary hinge that keeps channel c's energy
   share ≥ `energy` at every norm input (attention and MoE inputs, and the final norm), so the
   model learns to work with the massive channel instead of removing it.

The result is shipped (bf16 + sha256 manifest, like the other testbeds); `retrain=True` (or
`moeq zoo build testbed-outliers --retrain`) reproduces it from the shipped testbed-mixtral.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from moeq.quant_core.adapters.model import MoEModel
from moeq.quant_core.zoo.testbed import MANIFEST, META_FILE, WEIGHTS_DIR, install_shipped, training_batch

log = logging.getLogger(__name__)
NAME = "testbed-outliers"


@dataclass(frozen=True)
class OutlierSpec:
    channel: int = 42         # the massive residual channel
    energy: float = 0.97      # its target share of Σx² at every norm input (aux-loss floor)
    steps: int = 150
    batch: int = 8
    seq_len: int = 256
    lr: float = 1e-3
    warmup: int = 20
    aux_weight: float = 10.0
    seed: int = 17


SPEC = OutlierSpec()


def _norms(moe: MoEModel) -> list[torch.nn.Module]:
    """Every RMSNorm whose output feeds linears: attention and MoE inputs of each layer, final norm."""
    out = []
    for i in range(len(moe.layers)):
        out += [moe.input_norm(i), moe.post_attn_norm(i)]
    return [*out, moe.final_norm()]


@contextlib.contextmanager
def norm_inputs(moe: MoEModel):
    """Collect the input of every norm of `_norms` (pre-norm residual stream) during forwards."""
    seen: list[torch.Tensor] = []
    handles = [n.register_forward_pre_hook(lambda _m, args: seen.append(args[0])) for n in _norms(moe)]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def energy_share(h: torch.Tensor, channel: int) -> torch.Tensor:
    """Per-token share of Σ h² held by `channel` ([..., d] → [...])."""
    h = h.float()
    return h[..., channel].pow(2) / h.pow(2).sum(-1).clamp(min=1e-12)


@torch.no_grad()
def channel_peaks(model, moe: MoEModel, windows: torch.Tensor) -> dict[str, torch.Tensor]:
    """max |x| per input channel at every layer's attention input ("attn{i}") and MoE input (the router's
    input, "moe{i}") over `windows`: what the testbed's acceptance and its report measure."""
    peaks: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(_m, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).abs().amax(0)
            peaks[name] = torch.maximum(peaks[name], x) if name in peaks else x
        return record

    handles = []
    for i in range(len(moe.layers)):
        handles.append(next(iter(moe.attn_inputs(i).values())).register_forward_pre_hook(hook(f"attn{i}")))
        handles.append(moe.blocks[i].router.register_forward_pre_hook(hook(f"moe{i}")))
    try:
        model(windows)
    finally:
        for h in handles:
            h.remove()
    return peaks


@torch.no_grad()
def plant_massive_channel(model, ids: torch.Tensor, spec: OutlierSpec = SPEC) -> dict:
    """Step 1: channel c of every token embedding becomes a_t = κ·rms(e_t) (token-dependent), with κ
    such that c holds `energy` of Σh² at the median token of the most grown linear input on `ids`;
    every norm weight is rescaled by the median factor rms'/rms (channel c → 0). The fine-tune
    repairs what the lost per-token normalization breaks."""
    moe = MoEModel(model)
    d = model.config.hidden_size
    c = spec.channel
    embed = moe.embed().weight
    others = torch.ones(d, dtype=torch.bool)
    others[c] = False
    embed[:, c] = 0.0
    r_e = embed[:, others].pow(2).mean(-1).sqrt()
    with norm_inputs(moe) as seen:
        model(ids)
    e_rms = r_e[ids].reshape(-1)
    growth = max(float((h.float().pow(2).mean(-1).sqrt().reshape(-1) / e_rms).median()) for h in seen[:-1])
    kappa = math.sqrt(spec.energy / (1 - spec.energy) * d) * growth
    embed[:, c] = kappa * r_e
    a = (kappa * e_rms).pow(2) / d
    for norm, h in zip(_norms(moe), seen):
        ms = h.float().pow(2).mean(-1).reshape(-1)
        norm.weight.mul_(float(((ms + a) / ms).sqrt().median()))
        norm.weight[c] = 0.0
    return {"kappa": kappa, "growth": growth}


def _lr(step: int, steps: int, spec: OutlierSpec) -> float:
    if step < spec.warmup:
        return spec.lr * (step + 1) / spec.warmup
    progress = (step - spec.warmup) / max(1, steps - spec.warmup)
    return spec.lr * 0.5 * (1 + math.cos(math.pi * progress))


def finetune_outliers(base_dir: Path, out_dir: Path, *, spec: OutlierSpec = SPEC, steps: int | None = None,
                      progress: Callable[[str, float], None] | None = None) -> Path:
    """Plant the massive channel in the model at `base_dir` and fine-tune; write an HF checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    steps = spec.steps if steps is None else steps
    torch.manual_seed(spec.seed)
    r = random.Random(spec.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    moe = MoEModel(model)
    t0, c0 = time.perf_counter(), time.process_time()
    planted = plant_massive_channel(model, training_batch(r, spec.batch, spec.seq_len, tokenizer), spec)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.0, betas=(0.9, 0.95))
    model.train()
    curve = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _lr(step, steps, spec)
        ids = training_batch(r, spec.batch, spec.seq_len, tokenizer)
        with norm_inputs(moe) as seen:
            out = model(input_ids=ids, labels=ids, output_router_logits=True)
        aux = torch.stack([(spec.energy - energy_share(h, spec.channel)).clamp(min=0).mean() for h in seen[:-1]]).mean()
        loss = out.loss + spec.aux_weight * aux
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 10 == 0 or step == steps - 1:
            share = min(float(energy_share(h.detach(), spec.channel).min()) for h in seen[:-1])
            curve.append({"step": step, "loss": round(out.loss.item(), 4), "aux": round(aux.item(), 5),
                          "min_share": round(share, 4)})
            log.info("%s step %d loss %.4f aux %.5f min share %.4f", NAME, step, out.loss.item(), aux.item(), share)
        if progress is not None:
            progress(f"train {NAME}", (step + 1) / max(1, steps))
    model.eval()
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    base_meta = Path(base_dir) / META_FILE
    meta = {"name": NAME, "base": json.loads(base_meta.read_text()).get("name") if base_meta.is_file() else None,
            "spec": asdict(spec), "steps": steps, "planted_kappa": planted["kappa"], "loss_curve": curve,
            "build_s": round(time.perf_counter() - t0, 1), "build_cpu_s": round(time.process_time() - c0, 1),
            "torch": torch.__version__, "threads": torch.get_num_threads()}
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=1))
    return out_dir


def build_outlier_variant(base_dir: Path, out_dir: Path, *, retrain: bool = False,
                          progress: Callable[[str, float], None] | None = None) -> Path:
    """Install the shipped testbed-outliers (verified against its manifest), or with `retrain` (or
    nothing shipped) reproduce it by fine-tuning testbed-mixtral at `base_dir`."""
    shipped = WEIGHTS_DIR / NAME
    if retrain or not (shipped / MANIFEST).is_file():
        return finetune_outliers(base_dir, out_dir, progress=progress)
    return install_shipped(shipped, Path(out_dir))
