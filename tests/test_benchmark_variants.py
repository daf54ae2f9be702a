"""The ablation steps of benchmarks/eaquant_ablation.py and moequant_ablation.py are "the preset with
one part removed" (benchmarks/preset_variants.py): each differs from its preset only where it says."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from moeq.contract.presets import PRESETS


def _helpers():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "preset_variants.py"
    spec = importlib.util.spec_from_file_location("preset_variants", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_preset_variant_changes_only_what_it_names():
    pv = _helpers()
    preset = PRESETS["moequant"]
    assert pv.preset_variant("moequant") == {**preset, "techniques": list(preset["techniques"])}
    no_rotation = pv.preset_variant("moequant", drop=("rotation",))
    assert [t["name"] for t in no_rotation["techniques"]] == ["gptq"]
    no_agq = pv.preset_variant("moequant", options={"gptq": {"affinity": False}})
    gptq = next(t for t in no_agq["techniques"] if t["name"] == "gptq")
    assert gptq == {**next(t for t in preset["techniques"] if t["name"] == "gptq"), "affinity": False}
    no_balance = pv.preset_variant("eaquant", calibration={"balance": None})
    assert no_balance["calibration"] == {"balance": None} and no_balance["router"] == PRESETS["eaquant"]["router"]
    rtn_router = pv.preset_variant("eaquant", router={"mode": "quantize"})
    assert rtn_router["router"] == {**PRESETS["eaquant"]["router"], "mode": "quantize"}
    assert PRESETS["moequant"]["techniques"][1]["affinity"] is True  # the preset itself is untouched


def test_spread_rule_and_paired_counts():
    pv = _helpers()
    assert pv.exceeds_spread(1.0, 0.1, 1.25, 0.2) and not pv.exceeds_spread(1.0, 0.1, 1.15, 0.2)
    diffs = [{"kl": {"delta": 0.2, "within_noise": False}}, {"kl": {"delta": -0.1, "within_noise": False}},
             {"kl": {"delta": 0.3, "within_noise": True}}]
    assert pv.outside_noise(diffs, "kl") == {"higher": 1, "lower": 1}
