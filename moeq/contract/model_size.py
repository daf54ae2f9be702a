"""A model's size from its config.json alone (torch-free): parameters in all, per token, per layer.

Used at admission to bound what a config may claim against the memory a worker has, and to weigh a
recipe's tokens in the cost model (moeq.contract.cost). Estimates, not exact counts: attention is
taken as four hidden × hidden projections, each expert and the dense MLP as three hidden ×
intermediate projections, embeddings and head as two vocab × hidden matrices. Every size read goes
through `config_int` (a plausible range, one ModelError line); the products are Python integers, so
a hostile config cannot overflow them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from moeq.contract.describe import config_int, describe_config
from moeq.contract.errors import ModelError

BF16_BYTES = 2  # the dtype a worker loads a model in


@dataclass(frozen=True)
class ModelSize:
    total: int  # parameters in all
    active: int  # parameters one token passes through (top-k experts)
    largest_layer: int  # parameters of the largest decoder layer
    # parameters a streamed run must hold at once at the least: a layer without its routed experts
    # (attention, router, shared experts) plus one routed expert — it reads the experts by chunks
    largest_unit: int | None = None

    def bytes(self, params: int) -> int:
        return params * BF16_BYTES


SHARED_COUNTS = ("n_shared_experts", "num_shared_experts", "num_shared_expert", "moe_num_shared_experts")


def _size(config: dict[str, Any], name: str, limit: str = "intermediate") -> int:
    """`config[name]` in its plausible range (0 when absent); a per-layer list counts by its largest."""
    value = config.get(name)
    if isinstance(value, list) and value:
        return max(config_int({name: v}, name, limit=limit) for v in value)
    return config_int(config, name, 0, limit=limit) if value is not None else 0


def model_size(config: dict[str, Any]) -> ModelSize:
    info = describe_config(config)  # family, layers, experts, top-k, hidden and vocab in their ranges
    h = info.hidden_size
    dense_i = _size(config, "intermediate_size")
    expert_i = _size(config, "moe_intermediate_size") or dense_i
    shared_i = _size(config, "shared_expert_intermediate_size") or _size(config, "shared_intermediate_size")
    if not shared_i:
        shared_i = max((_size(config, n, "experts") for n in SHARED_COUNTS if config.get(n)), default=0) * expert_i
    attention = 4 * h * h
    expert = 3 * h * expert_i
    shared = 3 * h * shared_i
    moe_layer = attention + info.num_experts * (expert + h) + shared
    moe_active = attention + info.top_k * expert + shared
    dense_layer = attention + 3 * h * dense_i
    n_moe = len(info.moe_layers)
    n_dense = info.num_layers - n_moe
    embeddings = 2 * info.vocab_size * h
    moe_unit = attention + info.num_experts * h + shared + expert
    return ModelSize(total=n_moe * moe_layer + n_dense * dense_layer + embeddings,
                     active=n_moe * moe_active + n_dense * dense_layer + embeddings,
                     largest_layer=max(moe_layer if n_moe else 0, dense_layer if n_dense else 0),
                     largest_unit=max(moe_unit if n_moe else 0, dense_layer if n_dense else 0))


def _gb(n: int | float) -> str:
    return f"{n / 1e9:,.1f} GB"


def check_fits(size: ModelSize, checkpoint_bytes: int, memory_bytes: int, model: str,
               memory: str = "a worker's memory", setting: str = "; the operator sets it with MOEQ_WORKER_MEMORY_GB") \
        -> None:
    """ModelError when the config claims more than a worker can hold: the least a streamed run holds
    at once (the largest layer without its routed experts, plus one expert) above half the worker's
    memory, or the whole model above that memory
    while its safetensors files are too small to back it (a worker streams a model from disk only when
    the files are large; an in-memory run would allocate what the config says)."""
    unit = size.largest_layer if size.largest_unit is None else size.largest_unit
    if size.bytes(unit) > memory_bytes // 2:
        raise ModelError(f"{model}: config.json describes decoder layers of which the part a streamed run holds at "
                         f"once (attention, router, shared experts and one routed expert) is ~{unit:.3g} parameters "
                         f"({_gb(size.bytes(unit))} in bf16), more than half {memory} ({_gb(memory_bytes)}{setting})")
    whole = size.bytes(size.total)
    if whole > memory_bytes and checkpoint_bytes < size.total:
        raise ModelError(f"{model}: config.json describes ~{size.total:.3g} parameters ({_gb(whole)} in bf16), more "
                         f"than {memory} ({_gb(memory_bytes)}{setting}), but its safetensors "
                         f"files hold only {_gb(checkpoint_bytes)}: the config does not match the weights")
