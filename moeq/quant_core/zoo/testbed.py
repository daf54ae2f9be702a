"""Train the small MoE testbeds on the generated corpus, and install them into the zoo.

The trained checkpoints are committed (bf16 safetensors under testbed_weights/, with a sha256
manifest) and installed as float32 HF checkpoints; `retrain=True` (or `moeq zoo build --retrain`)
regenerates them with this script. Training is deterministic for a given seed and thread count.
The initial router weights are kept (initial_router.safetensors) for the router-norm-change score.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Callable

import torch

from moeq.contract.errors import ModelError
from moeq.quant_core.zoo.corpus import sample_domain
from moeq.quant_core.zoo.tokenizer import BOS_ID, EOS_ID, PAD_ID, VOCAB, build_tokenizer

log = logging.getLogger(__name__)
WEIGHTS_DIR = Path(__file__).parent / "testbed_weights"
MANIFEST = "manifest.json"
INITIAL_ROUTER_FILE = "initial_router.safetensors"
META_FILE = "moeq_testbed.json"

_BASE = dict(vocab_size=len(VOCAB), hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=512, bos_token_id=BOS_ID, eos_token_id=EOS_ID,
             pad_token_id=PAD_ID, tie_word_embeddings=False, router_aux_loss_coef=0.002)


@dataclass(frozen=True)
class TestbedSpec:
    family: str
    config: dict = field(default_factory=dict)
    steps: int = 1200
    batch: int = 8
    seq_len: int = 512  # = max_position_embeddings: evaluation/calibration windows up to 512 stay in-distribution
    lr: float = 3e-3
    warmup: int = 60
    weight_decay: float = 0.01


TESTBEDS = MappingProxyType({
    "testbed-mixtral": TestbedSpec("mixtral", {**_BASE, "intermediate_size": 128, "num_local_experts": 8,
                                               "num_experts_per_tok": 2}),
    "testbed-shared": TestbedSpec("qwen2_moe", {**_BASE, "intermediate_size": 256, "moe_intermediate_size": 128,
                                                "shared_expert_intermediate_size": 256, "num_experts": 8,
                                                "num_experts_per_tok": 2, "norm_topk_prob": False}),
})


def training_batch(r: random.Random, batch: int, seq_len: int, tokenizer) -> torch.Tensor:
    """[batch, seq_len] windows: BOS, then whole documents joined by newlines, cut at seq_len."""
    rows = []
    for _ in range(batch):
        text = ""
        while len(text) < seq_len:
            ex = sample_domain(r).make(r)
            text += ex.prompt + ex.answer + "\n"
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][: seq_len - 1]
        rows.append([BOS_ID, *ids])
    return torch.tensor(rows, dtype=torch.long)


def _lr(step: int, spec: TestbedSpec) -> float:
    if step < spec.warmup:
        return spec.lr * (step + 1) / spec.warmup
    progress = (step - spec.warmup) / max(1, spec.steps - spec.warmup)
    return spec.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _router_state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if k.endswith("mlp.gate.weight")}


def train_testbed(name: str, out_dir: Path, *, seed: int = 0, progress: Callable[[str, float], None] | None = None,
                  steps: int | None = None) -> Path:
    """Train testbed `name` from scratch and write an HF checkpoint (+ tokenizer, metadata) to `out_dir`."""
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = TESTBEDS[name]
    steps = steps or spec.steps
    torch.manual_seed(seed)
    r = random.Random(seed)
    tokenizer = build_tokenizer()
    config = AutoConfig.for_model(spec.family, **spec.config)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(_router_state(model), str(out_dir / INITIAL_ROUTER_FILE))
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay, betas=(0.9, 0.95))
    model.train()
    t0 = time.perf_counter()
    curve = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _lr(step, spec)
        ids = training_batch(r, spec.batch, spec.seq_len, tokenizer)
        out = model(input_ids=ids, labels=ids, output_router_logits=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 50 == 0 or step == steps - 1:
            curve.append({"step": step, "loss": round(out.loss.item(), 4),
                          "aux_loss": round(out.aux_loss.item(), 4) if out.aux_loss is not None else None})
            log.info("%s step %d loss %.4f", name, step, out.loss.item())
        if progress is not None:
            progress(f"train {name}", (step + 1) / steps)
    model.eval()
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    meta = {"name": name, "spec": asdict(spec), "seed": seed, "steps": steps, "loss_curve": curve,
            "build_s": round(time.perf_counter() - t0, 1), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "parameters": sum(p.numel() for p in model.parameters())}
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=1))
    return out_dir


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(directory: Path) -> dict:
    sums = {p.name: _sha256(p) for p in sorted(Path(directory).iterdir()) if p.is_file() and p.name != MANIFEST}
    (Path(directory) / MANIFEST).write_text(json.dumps(sums, indent=1))
    return sums


def package_testbed(src: Path, name: str, dest_root: Path = WEIGHTS_DIR) -> Path:
    """Copy a trained checkpoint into the package as bf16 (halves the repository size) + manifest."""
    from safetensors.torch import load_file, save_file

    dest = Path(dest_root) / name
    dest.mkdir(parents=True, exist_ok=True)
    for f in Path(src).iterdir():
        if f.suffix == ".safetensors" and f.name != INITIAL_ROUTER_FILE:
            tensors = {k: v.to(torch.bfloat16) for k, v in load_file(str(f)).items()}
            save_file(tensors, str(dest / f.name), metadata={"format": "pt"})
        elif f.is_file():
            shutil.copy2(f, dest / f.name)
    write_manifest(dest)
    return dest


def _verify(directory: Path) -> None:
    manifest = Path(directory) / MANIFEST
    sums = json.loads(manifest.read_text())
    for fname, digest in sums.items():
        if _sha256(Path(directory) / fname) != digest:
            raise ModelError(f"shipped testbed file {directory / fname} does not match its manifest sha256")


def install_testbed(name: str, zoo_dir: Path, *, retrain: bool = False,
                    progress: Callable[[str, float], None] | None = None) -> Path:
    """Write testbed `name` as a float32 HF checkpoint into zoo_dir/<name> (copy of shipped weights,
    or a fresh training run when `retrain` or nothing is shipped)."""
    if name not in TESTBEDS:
        raise ModelError(f"unknown testbed {name!r} (known: {', '.join(TESTBEDS)})")
    target = Path(zoo_dir) / name
    shipped = WEIGHTS_DIR / name
    if retrain or not (shipped / MANIFEST).is_file():
        return train_testbed(name, target, progress=progress)
    return install_shipped(shipped, target)


def install_shipped(shipped: Path, target: Path) -> Path:
    """Verify a shipped bf16 checkpoint against its manifest and write it to `target` as float32."""
    from safetensors.torch import load_file, save_file

    _verify(shipped)
    target.mkdir(parents=True, exist_ok=True)
    for f in shipped.iterdir():
        if f.name == MANIFEST:
            continue
        if f.suffix == ".safetensors" and f.name != INITIAL_ROUTER_FILE:
            save_file({k: v.float() for k, v in load_file(str(f)).items()}, str(target / f.name),
                      metadata={"format": "pt"})
        else:
            shutil.copy2(f, target / f.name)
    config = json.loads((target / "config.json").read_text())
    config["dtype"] = "float32"
    (target / "config.json").write_text(json.dumps(config, indent=2))
    return target
