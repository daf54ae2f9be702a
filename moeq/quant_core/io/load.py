"""Reload a model saved by `save_quantized`: verify checksums, restore the exact grid weights from
the integer codes, reinstall activation quantization and the router's input quantization."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from moeq.quant_core.adapters.model import MoEModel, get_path
from moeq.contract.errors import ArtifactError
from moeq.quant_core.functional.affine import QuantParams, dequantize
from moeq.quant_core.io.save import CHECKSUMS_FILE, CODES_FILE, FORMAT, META_FILE, sha256_file
from moeq.kernels.backend import may_use_kernels
from moeq.quant_core.functional.duquant import BlockTransform
from moeq.quant_core.modules import ActQuant, QuantExperts, attach_input_quant, attach_input_transform, kernel_weights
from moeq.quant_core.quantized import WeightRecord


MAX_CHECKSUMS_BYTES = 1 << 20


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    meta: dict
    moe: MoEModel
    handles: list
    records: dict


def verify_checksums(path: Path) -> dict:
    sums_file = path / CHECKSUMS_FILE
    if not sums_file.is_file():
        raise ArtifactError(f"{path} has no {CHECKSUMS_FILE}; not a moeq quantized model")
    from moeq.contract.safe_open import regular_file

    try:  # every file opened non-blocking and fstat-checked: a FIFO in a saved model never blocks a worker
        with regular_file(sums_file) as (f, _):
            sums = json.loads(f.read(MAX_CHECKSUMS_BYTES))
        if not isinstance(sums, dict):
            raise ValueError("not an object")
    except (OSError, ValueError, RecursionError):
        raise ArtifactError(f"{path}: {CHECKSUMS_FILE} is not a readable checksum list") from None
    for name, digest in sums.items():
        f = path / name
        if not isinstance(name, str) or "/" in name or name in ("", ".", ".."):
            raise ArtifactError(f"{path}: {CHECKSUMS_FILE} names {str(name)[:80]!r}, not a file of the folder")
        if not f.is_file():
            raise ArtifactError(f"{path}: file {name} listed in {CHECKSUMS_FILE} is missing")
        try:
            ok = sha256_file(f) == digest
        except OSError:
            raise ArtifactError(f"{path}: file {name} listed in {CHECKSUMS_FILE} is not a readable regular file") \
                from None
        if not ok:
            raise ArtifactError(f"{path}: file {name} does not match its recorded sha256 (corrupted or modified)")
    return sums


def _param_for_key(model: torch.nn.Module, key: str) -> torch.Tensor:
    module_path, _, name = key.rpartition(".")
    module = get_path(model, module_path)
    if module is None or getattr(module, name, None) is None:
        raise ArtifactError(f"saved tensor {key} has no counterpart in the model")
    return getattr(module, name).data


@torch.no_grad()
def load_quantized(path: Path, device: str | torch.device = "cpu", kernels: str = "auto") -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    verify_checksums(path)
    meta = json.loads((path / META_FILE).read_text())
    if meta.get("format") != FORMAT:
        raise ArtifactError(f"{path}: unknown format {meta.get('format')!r}")
    model = AutoModelForCausalLM.from_pretrained(path, dtype="auto").eval()
    if hasattr(model, "set_experts_implementation") and torch.device(device).type == "cpu":
        model.set_experts_implementation("eager")  # as the run computed the probe (model_io.load_model)
    model.requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tensors = load_file(str(path / CODES_FILE))
    for shard in meta.get("codes_shards", []):  # streamed runs write one codes file per layer
        for key, value in load_file(str(path / shard)).items():  # or per chunk of experts: joined in order
            tensors[key] = torch.cat([tensors[key], value]) if key in tensors else value
    moe = MoEModel(model)
    records: dict[str, WeightRecord] = {}
    for key, info in meta["records"].items():
        bits = tensors[f"{key}.bits"]
        params = QuantParams(tensors[f"{key}.scale"], tensors[f"{key}.zero"], bits if bits.numel() > 1 else bits[0],
                             info["group_size"], info["symmetric"])
        target = _param_for_key(model, key)
        if info["role"] in ("experts_gate_up", "experts_down"):
            layer = info["layer"]
            group = moe.blocks[layer].experts
            target = group.gate_up() if info["role"] == "experts_gate_up" else group.down()
        target.copy_(dequantize(tensors[f"{key}.codes"], params, target.dtype))
        records[key] = WeightRecord(key, info["role"], info["layer"], tensors[f"{key}.codes"], params)
    transforms = {key: BlockTransform.from_tensors({n: tensors[f"transform.{key}.{n}"] for n in ("r1", "perm", "r2")})
                  for key in meta.get("transforms", [])}
    # before the move, so that experts running the packed kernel never bring their dense copy to the device
    handles = install_runtime(moe, meta, kernels, records, torch.device(device), transforms)
    model.to(device)
    return LoadedModel(model, tokenizer, meta, moe, handles, records)


def install_runtime(moe: MoEModel, meta: dict, kernels: str, records: dict | None = None,
                    device: torch.device | None = None, transforms: dict | None = None) -> list:
    """Reinstall the DuQuant input transforms and the activation quantization the pipeline installed
    (recorded in meta) and, when kernels resolve to Triton on this device, the fused mixed-bit MoE kernel."""
    handles = []
    transforms = transforms or {}
    for path, t in transforms.items():  # before input quantization: it quantizes the transformed input
        module = get_path(moe.model, path)
        if module is not None and not isinstance(module, QuantExperts) and hasattr(module, "weight"):
            handles.append(attach_input_transform(module, t))
    for path, fields in meta.get("input_quant", {}).items():
        module = get_path(moe.model, path)
        if module is None:
            raise ArtifactError(f"input quantization recorded for missing module {path}")
        handles.append(attach_input_quant(module, ActQuant(**{**fields, "backend": kernels})))
    use_kernel = records is not None and device is not None and may_use_kernels(kernels, device)
    for i, block in moe.blocks.items():
        fields = meta.get("quant_experts", {}).get(str(i))
        prefix = f"{moe.spec.layers}.{i}.{moe.spec.experts_path}"
        kernel = None
        if use_kernel and f"{prefix}.gate_up_proj" in records and moe.spec.expert_call == "routed" \
                and QuantExperts.kernel_compatible(block.experts.module):
            gate_up, down = records[f"{prefix}.gate_up_proj"], records[f"{prefix}.down_proj"]
            kernel = kernel_weights(gate_up, down)
            kernel = None if kernel is None else tuple(k.to(device) for k in kernel)
        t_in = transforms.get(f"{prefix}.in")
        if f"{prefix}.in.0" in transforms:  # one input transform per routed expert (EAQuant)
            t_in = [transforms[f"{prefix}.in.{e}"] for e in range(block.num_experts)]
        downs = [transforms[f"{prefix}.down.{e}"] for e in range(block.num_experts)] \
            if f"{prefix}.down.0" in transforms else None
        if fields is not None or kernel is not None or t_in is not None:
            aq = ActQuant(**{**(fields or {}), "backend": kernels})
            quant = QuantExperts(block.experts.module, aq, kernel, kernels, t_in, downs)
            moe.replace_experts(i, quant)
            if quant.kernel is not None and kernels == "triton":
                quant.release_dense()  # the packed weights replace the dequantized ones
    return handles


@torch.no_grad()
def check_probe(loaded: LoadedModel, path: Path) -> bool:
    """True when the reloaded model reproduces the saved probe logits bit for bit."""
    tensors = load_file(str(Path(path) / CODES_FILE))
    device = next(loaded.model.parameters()).device
    logits = loaded.model(input_ids=tensors["probe.input_ids"].to(device), use_cache=False).logits.float().cpu()
    return torch.equal(logits, tensors["probe.logits"])
