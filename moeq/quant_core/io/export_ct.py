"""Export a saved moeq model in the compressed-tensors "pack-quantized" format (what vLLM and
llm-compressor load), and load such a checkpoint back through compressed-tensors for checking.

Tensors are written under the checkpoint's original names (transformers reverts its fused-expert
conversion for us), one Linear per expert. Per-expert bit widths become one config group per
(bits, symmetric, strategy, group size), targeting the exact module names. Needs the optional
dependency: `pip install moeq[export]`.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from moeq.contract.errors import ArtifactError
from moeq.quant_core.io.load import load_quantized


def _ct():
    try:
        from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
        from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
    except ImportError:
        raise ArtifactError("compressed-tensors export needs: pip install 'moeq[export]'") from None
    return PackedQuantizationCompressor, QuantizationArgs, QuantizationScheme


def _revert(model, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename/split in-memory tensors to the checkpoint's on-disk layout (transformers' own mapping)."""
    from transformers.core_model_loading import revert_weight_conversion

    return dict(revert_weight_conversion(model, dict(tensors)))


def _args_key(bits: int, symmetric: bool, group: int, in_features: int) -> tuple:
    return (bits, symmetric, "channel" if group >= in_features else "group", None if group >= in_features else group)


def export_compressed_tensors(saved_dir: Path, out_dir: Path) -> Path:
    """Write `out_dir` (pack-quantized compressed-tensors checkpoint) from a moeq `--save` directory."""
    compressor, QuantizationArgs, _ = _ct()
    loaded = load_quantized(saved_dir, kernels="torch")
    model, records = loaded.model, loaded.records
    dense = _revert(model, {k: v.detach() for k, v in model.state_dict().items()})
    fields = {}
    for name in ("scale", "zero", "bits"):
        per_key = {}
        for key, rec in records.items():
            t = {"scale": rec.params.scale, "zero": rec.params.zero,
                 "bits": rec.per_matrix_bits().float().reshape(*rec.codes.shape[:-2], 1, 1)
                 .expand(*rec.params.scale.shape)}[name]
            per_key[key] = t.contiguous()
        fields[name] = _revert(model, per_key)
    out, groups = {}, defaultdict(list)
    for name, weight in dense.items():
        if name not in fields["scale"] or weight.dim() != 2:
            out[name] = weight.contiguous()
            continue
        scale, zero = fields["scale"][name], fields["zero"][name]
        bits = int(fields["bits"][name].reshape(-1)[0])
        group = weight.shape[1] // scale.shape[1]
        symmetric = bool(torch.all(zero == 2 ** (bits - 1)))
        key = _args_key(bits, symmetric, group, weight.shape[1])
        args = QuantizationArgs(num_bits=bits, type="int", symmetric=symmetric, strategy=key[2], group_size=key[3])
        module = name[: -len(".weight")]
        groups[key].append(module)
        state = {"weight": weight.float(), "weight_scale": scale.float(),
                 "weight_zero_point": (zero - 2 ** (bits - 1)).to(torch.int8)}
        packed = compressor.compress(state, _scheme(args, [module]))
        out.update({f"{module}.{k}": v.contiguous() for k, v in packed.items()})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(out, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((Path(saved_dir) / "config.json").read_text())
    config["quantization_config"] = {
        "quant_method": "compressed-tensors", "format": "pack-quantized", "quantization_status": "compressed",
        "config_groups": {f"group_{i}": {"targets": sorted(mods), "format": "pack-quantized",
                                         "weights": {"num_bits": k[0], "type": "int", "symmetric": k[1],
                                                     "strategy": k[2], "group_size": k[3]}}
                          for i, (k, mods) in enumerate(sorted(groups.items(), key=lambda kv: kv[0][:2]))},
        "ignore": ["lm_head"],
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    for f in Path(saved_dir).iterdir():
        if f.name.startswith("tokenizer") or f.name in ("generation_config.json", "special_tokens_map.json"):
            shutil.copy2(f, out_dir / f.name)
    return out_dir


def _scheme(args, targets: list[str]):
    _, _, QuantizationScheme = _ct()
    return QuantizationScheme(targets=targets, weights=args)


def load_compressed_tensors(ct_dir: Path, dense_dir: Path):
    """Decompress every packed module with compressed-tensors into a dense checkpoint at `dense_dir`
    and load it with transformers (the independent check of the export)."""
    from transformers import AutoModelForCausalLM

    compressor, QuantizationArgs, _ = _ct()
    ct_dir, dense_dir = Path(ct_dir), Path(dense_dir)
    config = json.loads((ct_dir / "config.json").read_text())
    qcfg = config.pop("quantization_config")
    tensors = load_file(str(ct_dir / "model.safetensors"))
    dense = {k: v for k, v in tensors.items() if not k.rsplit(".", 1)[-1].startswith("weight_")}
    for group in qcfg["config_groups"].values():
        args = QuantizationArgs(**group["weights"])
        for module in group["targets"]:
            state = {k.rsplit(".", 1)[-1]: v for k, v in tensors.items() if k.rsplit(".", 1)[0] == module}
            dense[f"{module}.weight"] = compressor.decompress(state, _scheme(args, [module]))["weight"]
    dense_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in dense.items()}, str(dense_dir / "model.safetensors"),
              metadata={"format": "pt"})
    (dense_dir / "config.json").write_text(json.dumps(config, indent=2))
    model = AutoModelForCausalLM.from_pretrained(dense_dir, dtype=torch.float32)
    return model.eval()
