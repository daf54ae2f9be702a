"""Which weight group sizes fit a model: every quantized linear's input width, read from config.json.

A group size must divide the input width of every linear it quantizes: the attention projections
(hidden size in, heads × head dim out of o_proj's input), the dense and expert MLPs, the shared expert,
and family-specific ones — DeepSeek-V2/V3's MLA low-rank projections (q_b_proj takes q_lora_rank,
kv_b_proj takes kv_lora_rank, o_proj takes heads × v_head_dim). Torch-free: checked before queueing.
"""

from __future__ import annotations

COMMON_GROUPS = (256, 128, 64, 32, 16, 8)  # the sizes suggested when one does not fit


def _int(config: dict, name: str) -> int | None:
    v = config.get(name)
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def input_widths(config: dict) -> dict[str, int]:
    """Input width of each kind of quantized linear: {'hidden_size': 4096, 'kv_lora_rank (kv_b_proj)': 512, …}."""
    out: dict[str, int] = {}
    for name in ("hidden_size", "intermediate_size", "moe_intermediate_size", "shared_expert_intermediate_size",
                 "shared_intermediate_size"):
        if _int(config, name):
            out[name] = _int(config, name)
    if _int(config, "kv_channels") and _int(config, "num_key_value_heads"):  # JetMoE's attention experts (o)
        out["kv_channels × num_key_value_heads (attention experts)"] = \
            _int(config, "kv_channels") * _int(config, "num_key_value_heads")
    heads, hidden = _int(config, "num_attention_heads"), _int(config, "hidden_size")
    if _int(config, "kv_lora_rank"):  # MLA (DeepSeek-V2/V3)
        out["kv_lora_rank (kv_b_proj)"] = _int(config, "kv_lora_rank")
        if _int(config, "q_lora_rank"):
            out["q_lora_rank (q_b_proj)"] = _int(config, "q_lora_rank")
        if heads and _int(config, "v_head_dim"):
            out["heads × v_head_dim (o_proj)"] = heads * _int(config, "v_head_dim")
    elif heads and hidden:
        head_dim = _int(config, "head_dim") or hidden // heads
        if heads * head_dim != hidden:
            out["heads × head_dim (o_proj)"] = heads * head_dim
    return out


def fitting_groups(config: dict) -> list[str]:
    """The common group sizes that divide every width, in CLI spelling ('channel' always fits)."""
    return fitting_groups_of(input_widths(config))


def fitting_groups_of(widths: dict[str, int]) -> list[str]:
    return [str(g) for g in COMMON_GROUPS if all(w % g == 0 for w in widths.values())] + ["channel"]


def group_problem(config: dict, group: int | None, model: str) -> str | None:
    """One line naming every width `group` does not divide and the group sizes that fit all of them."""
    return widths_problem(input_widths(config), group, model)


def widths_problem(widths: dict[str, int], group: int | None, model: str) -> str | None:
    """group_problem for widths already known (a zoo model not built yet: moeq.contract.zoo_widths)."""
    if group is None:
        return None
    bad = {k: w for k, w in widths.items() if w % group}
    if not bad:
        return None
    said = ", ".join(f"{k} = {w}" for k, w in bad.items())
    return (f"group size {group} does not divide {said} of {model}; group sizes that fit every width: "
            f"{', '.join(fitting_groups_of(widths))}")
