"""`moeq models check DIR`: what moeq sees in a checkpoint and what it can do with it, before any
work — from config.json and the safetensors headers alone (torch-free, also used by the web app)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from moeq.contract.checkpoint_check import MAX_HEADER_BYTES, check_checkpoint_files
from moeq.contract.coverage import FEATURES, support
from moeq.contract.describe import describe_config, family_for_config, read_config
from moeq.contract.errors import ModelError
from moeq.contract.family_spec import FamilySpec

ROUTING_WORDS = {
    "softmax_topk": "softmax top-k",
    "sigmoid_grouped_topk": "sigmoid top-k with a correction bias (grouped when n_group > 1)",
    "sigmoid_topk": "top-k of the logits, sigmoid scores",
    "sparsemixer": "sparsemixer (masked softmax per pick)",
}


def routing_words(spec: FamilySpec, config: dict) -> str:
    if not spec.described:
        return "the model's own router (read where the block calls its experts; no rule described)"
    words = ROUTING_WORDS[spec.routing]
    norm = spec.norm_topk_prob if spec.norm_topk_prob is not None else bool(config.get("norm_topk_prob"))
    extra = [w for w, on in (("renormalized top-k weights", norm and spec.routing != "sparsemixer"),
                             ("weights x routed_scaling_factor", spec.scaled_weights),
                             (f"selection bias {spec.router_bias}", spec.router_bias is not None),
                             ("scores multiply the expert input", spec.expert_call == "scaled_input"),
                             ("tokens handed to the experts sorted by expert", spec.expert_call == "sorted")) if on]
    return words + ("; " + ", ".join(extra) if extra else "")


def parameter_count(model_dir: Path) -> int | None:
    """Parameters stored in the checkpoint's safetensors (MXFP4 blocks count two per byte, their
    scales none); None when it has no safetensors files."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for path in files:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > MAX_HEADER_BYTES:
                raise ModelError(f"{path} has an implausible safetensors header")
            header = json.loads(f.read(n).decode("utf-8"))
        for name, info in header.items():
            if name == "__metadata__" or name.endswith("_scales") and info.get("dtype") == "U8":
                continue
            count = 1
            for d in info.get("shape", []):
                count *= int(d)
            total += 2 * count if name.endswith("_blocks") and info.get("dtype") == "U8" else count
    return total


def check_model_dir(model_dir: Path) -> dict:
    """The preflight report of a model directory (ModelError when it is not a usable MoE checkpoint)."""
    config = read_config(Path(model_dir))
    info = describe_config(config)
    spec = family_for_config(config)
    check_checkpoint_files(Path(model_dir))
    return {
        "model_type": info.model_type, "family": info.family, "described": spec.described,
        "layers": info.num_layers, "moe_layers": list(info.moe_layers), "experts": info.num_experts,
        "top_k": info.top_k, "shared_experts": info.shared_experts, "routing": routing_words(spec, config),
        "parameters": parameter_count(Path(model_dir)), "notes": spec.notes,
        "techniques": {f: {"label": FEATURES[f][0], "applies": why is None, "why": why}
                       for f, why in support(spec).items()},
    }


def report_lines(r: dict) -> list[str]:
    params = "unknown" if r["parameters"] is None else f"{r['parameters']:,}"
    kind = "described" if r["described"] else "found from the model, not described"
    out = [f"family          {r['family']} ({kind}; model_type {r['model_type']})",
           f"MoE layers      {len(r['moe_layers'])} of {r['layers']}: {r['moe_layers']}",
           f"experts         {r['experts']} routed, top-{r['top_k']}, "
           f"{'with' if r['shared_experts'] else 'no'} shared experts",
           f"routing         {r['routing']}",
           f"parameters      {params}",
           "techniques:"]
    for t in r["techniques"].values():
        out.append(f"  {'applies' if t['applies'] else 'refused':<8} {t['label']}" + ("" if t["applies"] else
                                                                                      f" — {t['why']}"))
    return out
