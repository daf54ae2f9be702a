"""Named technique presets that expand into recipe fragments (used by the CLI and the web app)."""

from __future__ import annotations

from types import MappingProxyType

from moeq.contract.techniques import DUQUANT_ALPHA, EAQUANT_ALPHA

PRESETS = MappingProxyType({
    # DuQuant (the base of EAQuant's tables): smoothing first, then online per-linear block rotation +
    # zigzag permutation + block rotation; see docs/methods.md
    # weights as released (Hsu1023/DuQuant 1b425e8, run.sh: no --symmetric, --swc 0.8): per-channel
    # asymmetric with the fixed clip 0.8; v→o and down_proj smoothing; the q/k/v factor from q_proj's
    # weight, the gate/up factor from the up projections' (quantize/duquant.py `pairs`; docs/methods.md "DuQuant")
    "duquant": {"techniques": [{"name": "smooth", "aggregate": "all", "alpha": DUQUANT_ALPHA, "down_proj": True,
                                "v_o": True, "readers": "q_up"}, {"name": "duquant"},
                               {"name": "rtn"}],
                "weights": {"group_size": None, "symmetric": False, "clip_ratio": 0.8}},
    # what `duquant` used to be: QuaRot-style residual Hadamard rotation, then SmoothQuant, RTN
    "quarot_smooth": {"techniques": [{"name": "rotation"}, {"name": "smooth", "aggregate": "all", "alpha": DUQUANT_ALPHA},
                                     {"name": "rtn", "clip_search": True}]},
    # EAQuant on the DuQuant base, in the authors' order (aggregation before the transforms)
    # EAQuant as released (darren-fzq1/EAQuant 37c4509, run.sh 0fe98b3): `max` merge without the router's
    # factor, per-row asymmetric weights with the squared-error search over 101 ratios in [0.35, 1]
    # (per_channel_tensor), every reader's weight in the smoothing factors (`get_scale` over q/k/v and over
    # each expert's gate+up, quantize/smooth.py), the router asymmetric 8-bit with one KL-chosen ratio on the
    # mean calibration sequence (per_channel_kl_top0), expert tokens capped at int(k/n · seq_len · 2) first-come
    "eaquant": {"techniques": [{"name": "smooth", "aggregate": "expert", "alpha": EAQUANT_ALPHA, "down_proj": True,
                                "include_router": False, "v_o": True},
                               {"name": "duquant", "moe_input": "expert"},
                               {"name": "rtn", "clip_search": True, "clip_steps": 101}],
                "weights": {"group_size": None, "symmetric": False},
                "router": {"mode": "align", "search": "single", "symmetric": False, "bits": 8, "act_bits": 8},
                "calibration": {"balance": {"r": 2.0, "cap": "sequence", "select": "first", "extra_samples": 0,
                                            "smoothing": False}}},
    # MoEQuant as released (chenzx921020/MoEQuant c9784c2, README command + fake_quant/utils.py defaults):
    # rotation, per-channel symmetric weights with the `--w_clip` error search, GPTQ without act-order,
    # the router GPTQ-quantized at the weight bits before the experts' affinity Hessians are taken
    "moequant": {"techniques": [{"name": "rotation"},
                                {"name": "gptq", "affinity": True, "act_order": False, "clip_search": True}],
                 "weights": {"group_size": None, "symmetric": True},
                 "router": {"mode": "gptq", "bits": None, "act_bits": None},
                 "calibration": {"sampler": "ebss"}},
    "gptq_rotation": {"techniques": [{"name": "rotation"}, {"name": "gptq"}]},
})


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        elif k == "techniques":
            out[k] = [*out.get(k, []), *v]
        else:
            out[k] = v
    return out


def expand(names: list[str]) -> dict:
    """Recipe fragment for a list of technique or preset names ('gptq', 'rotation', 'eaquant', ...)."""
    fragment: dict = {"techniques": []}
    for name in names:
        name = name.strip()
        if not name:
            continue
        if name in PRESETS:
            fragment = _merge(fragment, PRESETS[name])
        else:
            fragment["techniques"].append({"name": name})
    return fragment


def merge(base: dict, extra: dict) -> dict:
    """Deep-merge recipe fragments (technique lists are concatenated)."""
    return _merge(base, extra)
