"""Describe a checkpoint from its config.json alone (no torch): family, layers, experts, top-k."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from quant_core.adapters.families import FAMILIES
from quant_core.adapters.spec import FamilySpec
from quant_core.errors import ModelError, UnsupportedFamilyError


@dataclass(frozen=True)
class ModelInfo:
    model_type: str
    family: str
    num_layers: int
    moe_layers: tuple[int, ...]
    num_experts: int
    top_k: int
    hidden_size: int
    shared_experts: bool
    vocab_size: int

    def to_dict(self) -> dict:
        d = asdict(self)
        d["moe_layers"] = list(self.moe_layers)
        return d


def get_family(model_type: str) -> FamilySpec:
    """The FamilySpec for `model_type`, or an error listing the supported types."""
    try:
        return FAMILIES[model_type]
    except KeyError:
        supported = ", ".join(sorted(FAMILIES))
        raise UnsupportedFamilyError(
            f"model_type {model_type!r} is not a supported MoE family (supported: {supported})") from None


def _first(config: dict[str, Any], names: tuple[str, ...], what: str) -> int:
    for n in names:
        if config.get(n) is not None:
            return int(config[n])
    raise ModelError(f"config has none of {names} ({what}); is this an MoE model?")


def moe_layer_indices(config: dict[str, Any], num_layers: int) -> tuple[int, ...]:
    """Which decoder layers carry an MoE block, from the generic config switches."""
    first_dense = int(config.get("first_k_dense_replace") or 0)
    mlp_only = set(config.get("mlp_only_layers") or [])
    step = int(config.get("decoder_sparse_step") or 1)
    freq = int(config.get("moe_layer_freq") or 1)
    return tuple(i for i in range(num_layers)
                 if i >= first_dense and i not in mlp_only and (i + 1) % step == 0 and i % freq == 0)


def describe_config(config: dict[str, Any]) -> ModelInfo:
    model_type = config.get("model_type")
    if not model_type:
        raise ModelError("config.json has no model_type")
    family = get_family(model_type)
    num_layers = int(config.get("num_hidden_layers") or 0)
    num_experts = _first(config, family.num_experts_attrs, "number of experts")
    if num_experts <= 1:
        raise ModelError(f"model has {num_experts} expert(s); moeq quantizes Mixture-of-Experts models")
    return ModelInfo(
        model_type=model_type,
        family=family.name,
        num_layers=num_layers,
        moe_layers=moe_layer_indices(config, num_layers),
        num_experts=num_experts,
        top_k=_first(config, family.top_k_attrs, "experts per token"),
        hidden_size=int(config.get("hidden_size") or 0),
        shared_experts=family.has_shared_experts,
        vocab_size=int(config.get("vocab_size") or 0),
    )


def read_config(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / "config.json"
    if not Path(model_dir).is_dir():
        raise ModelError(f"model directory {model_dir} does not exist")
    if not path.is_file():
        raise ModelError(f"{model_dir} has no config.json; not a Hugging Face checkpoint")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from None


def describe_dir(model_dir: Path) -> ModelInfo:
    return describe_config(read_config(model_dir))
