"""Describe a checkpoint from its config.json alone (no torch): family, layers, experts, top-k."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from moeq.contract.families import FAMILIES
from moeq.contract.family_spec import NUM_EXPERTS_ATTRS, FamilySpec
from moeq.contract.errors import ModelError, UnsupportedFamilyError
from moeq.contract.safe_open import NotRegularFile, regular_file


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
    described: bool = True  # False: found from the model, no family description
    routing: str = "softmax_topk"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["moe_layers"] = list(self.moe_layers)
        return d


def get_family(model_type: str) -> FamilySpec:
    """The described FamilySpec for `model_type`, or an error listing the described types."""
    try:
        return FAMILIES[model_type]
    except KeyError:
        supported = ", ".join(sorted(FAMILIES))
        raise UnsupportedFamilyError(
            f"model_type {model_type!r} is not a supported MoE family (supported: {supported})") from None


def detected_family(model_type: str) -> FamilySpec:
    """The spec of a family found from the model but not described: the default paths (the runtime
    adapter finds the real ones in the loaded model) and no description-bound technique."""
    return FamilySpec(name=model_type, model_types=(model_type,), described=False,
                      notes="found from the model: routed experts and router detected, no family description")


def has_experts(config: dict[str, Any]) -> bool:
    """Whether config.json declares more than one routed expert under a known key."""
    for name in NUM_EXPERTS_ATTRS:
        v = config.get(name)
        if v is not None:
            return isinstance(v, int) and not isinstance(v, bool) and v > 1
    return False


def family_for_config(config: dict[str, Any]) -> FamilySpec:
    """Described family of the config's model_type, else a detected one when the config declares
    routed experts, else UnsupportedFamilyError."""
    model_type = config.get("model_type")
    if model_type in FAMILIES:
        return FAMILIES[model_type]
    if has_experts(config):
        return detected_family(model_type)
    text = config.get("text_config")
    if isinstance(text, dict) and has_experts(text):
        raise UnsupportedFamilyError(
            f"model_type {model_type!r} is a multimodal checkpoint; moeq quantizes text models: give a checkpoint "
            f"of its text model (model_type {text.get('model_type')!r})")
    described = ", ".join(sorted(FAMILIES))
    raise UnsupportedFamilyError(
        f"model_type {model_type!r} is not a supported MoE family: its config.json declares no routed experts "
        f"({' / '.join(NUM_EXPERTS_ATTRS)}); described families: {described}")


# plausible ranges for the sizes read from config.json: a hostile or broken config (1e12 layers, a
# string, a list) becomes one ModelError instead of an endless loop or a raw Python exception
LIMITS = {"num_hidden_layers": (1, 4096), "experts": (1, 65536), "top_k": (1, 65536), "hidden_size": (1, 1 << 20),
          "vocab_size": (1, 1 << 24), "first_k_dense_replace": (0, 4096), "decoder_sparse_step": (1, 4096),
          "moe_layer_freq": (1, 4096), "moe_layer_start_index": (0, 4096), "moe_layer_end_index": (-1, 1 << 20),
          "moe_layer_interval": (1, 4096), "intermediate": (1, 1 << 20)}
MAX_CONFIG_BYTES = 16 << 20


def config_int(config: dict[str, Any], name: str, default: int | None = None, limit: str | None = None) -> int:
    """`config[name]` as an integer inside its plausible range, or a one-line ModelError."""
    value = config.get(name)
    if value is None:
        if default is None:
            raise ModelError(f"config.json has no {name}")
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
            or (isinstance(value, float) and not value.is_integer()):
        raise ModelError(f"config.json: {name} must be an integer, got {value!r:.40}")
    lo, hi = LIMITS.get(limit or name, (0, 1 << 31))
    if not lo <= value <= hi:
        raise ModelError(f"config.json: {name} = {value!r:.40} is outside the plausible range [{lo}, {hi}]")
    return int(value)


def _first(config: dict[str, Any], names: tuple[str, ...], what: str, limit: str) -> int:
    for n in names:
        if config.get(n) is not None:
            return config_int(config, n, limit=limit)
    raise ModelError(f"config has none of {names} ({what}); is this an MoE model?")


def moe_layer_indices(config: dict[str, Any], num_layers: int) -> tuple[int, ...]:
    """Which decoder layers carry an MoE block, from the generic config switches."""
    first_dense = next((config_int(config, k, 0, limit="first_k_dense_replace")
                        for k in ("first_k_dense_replace", "num_dense_layers") if config.get(k)), 0)
    mlp_only = config.get("mlp_only_layers") or []
    if not isinstance(mlp_only, list):
        raise ModelError(f"config.json: mlp_only_layers must be a list, got {mlp_only!r:.40}")
    mlp_only = set(mlp_only)
    step = config_int(config, "decoder_sparse_step", 1) if config.get("decoder_sparse_step") else 1
    freq = config_int(config, "moe_layer_freq", 1) if config.get("moe_layer_freq") else 1
    kinds = config.get("mlp_layer_types")  # DeepSeek-V3.2: "dense" / "sparse" per layer
    if kinds is not None and (not isinstance(kinds, list) or len(kinds) != num_layers):
        raise ModelError(f"config.json: mlp_layer_types must be a list of {num_layers} entries")
    start = config_int(config, "moe_layer_start_index", 0) if "moe_layer_start_index" in config else 0
    end = config_int(config, "moe_layer_end_index", -1) if "moe_layer_end_index" in config else -1
    end = num_layers - 1 if end < 0 else end
    interval = config_int(config, "moe_layer_interval", 1) if config.get("moe_layer_interval") else 1
    listed = config.get("moe_layers")  # Llama 4: the MoE layers, listed
    if listed is not None and not (isinstance(listed, list) and all(isinstance(i, int) for i in listed)):
        raise ModelError("config.json: moe_layers must be a list of layer indices")
    return tuple(i for i in range(num_layers)
                 if i >= first_dense and i not in mlp_only and (i + 1) % step == 0 and i % freq == 0
                 and (kinds is None or kinds[i] == "sparse") and start <= i <= end and (i + 1) % interval == 0
                 and (listed is None or i in listed))


SHARED_EXPERT_KEYS = ("n_shared_experts", "num_shared_experts", "moe_num_shared_experts", "num_shared_expert",
                      "shared_expert_intermediate_size", "shared_intermediate_size")


def _shared_experts(config: dict[str, Any], family: FamilySpec) -> bool:
    """Whether the MoE blocks have shared experts: the family says where they live, the config how many."""
    counts = [config[k] for k in SHARED_EXPERT_KEYS if k in config]
    declared = any(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in counts)
    if not family.described:
        return declared
    return family.has_shared_experts and (declared or not counts)


def describe_config(config: dict[str, Any]) -> ModelInfo:
    if not isinstance(config, dict):
        raise ModelError(f"config.json must hold a JSON object, got {type(config).__name__}")
    model_type = config.get("model_type")
    if not model_type:
        raise ModelError("config.json has no model_type")
    if not isinstance(model_type, str):
        raise ModelError(f"config.json: model_type must be a string, got {model_type!r:.40}")
    family = family_for_config(config)
    num_layers = config_int(config, "num_hidden_layers", 0)
    num_experts = _first(config, family.num_experts_attrs, "number of experts", "experts")
    if num_experts <= 1:
        raise ModelError(f"model has {num_experts} expert(s); moeq quantizes Mixture-of-Experts models")
    return ModelInfo(
        model_type=model_type,
        family=family.name,
        num_layers=num_layers,
        moe_layers=moe_layer_indices(config, num_layers),
        num_experts=num_experts,
        top_k=_first(config, family.top_k_attrs, "experts per token", "top_k"),
        hidden_size=config_int(config, "hidden_size", 0) if config.get("hidden_size") else 0,
        shared_experts=_shared_experts(config, family),
        vocab_size=config_int(config, "vocab_size", 0) if config.get("vocab_size") else 0,
        described=family.described,
        routing=family.routing,
    )


def read_config(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / "config.json"
    if not Path(model_dir).is_dir():
        raise ModelError(f"model directory {model_dir} does not exist")
    if not path.is_file():
        raise ModelError(f"{model_dir} has no config.json; not a Hugging Face checkpoint")
    try:  # non-blocking, fstat-checked before reading: a FIFO swapped in never blocks
        with regular_file(path) as (f, _):
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except NotRegularFile:
        raise ModelError(f"{path} is not a regular file (FIFOs, devices and folders are refused)") from None
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ModelError(f"{path} is larger than {MAX_CONFIG_BYTES >> 20} MB; not a model config")
    try:
        config = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ModelError(f"{path} is not UTF-8 text (binary file?)") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ModelError(f"{path} is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(config, dict):
        raise ModelError(f"{path} must hold a JSON object, got {type(config).__name__}")
    return config


def describe_dir(model_dir: Path) -> ModelInfo:
    return describe_config(read_config(model_dir))
