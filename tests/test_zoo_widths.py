"""The zoo's width table (checked before a zoo model is built) equals what its config says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moeq.contract.group_fit import input_widths
from moeq.contract.zoo import ZOO
from moeq.contract.zoo_widths import ZOO_WIDTHS

WEIGHTS = Path(__file__).resolve().parents[1] / "moeq" / "quant_core" / "zoo" / "testbed_weights"


def _config(name: str) -> dict:
    entry = ZOO[name]
    if entry.kind == "tiny":
        from moeq.quant_core.zoo.tiny import tiny_config

        return json.loads(tiny_config(entry.family).to_json_string())  # what save_pretrained writes
    return json.loads((WEIGHTS / name / "config.json").read_text())


def test_every_zoo_model_has_widths():
    assert sorted(ZOO_WIDTHS) == sorted(ZOO)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_widths_equal_the_config(name):
    assert ZOO_WIDTHS[name] == input_widths(_config(name))


def test_an_unbuilt_zoo_model_gets_the_group_check_the_launch_form_shows(moeq_home):
    """The Launch form's verdict is admission (AppServices.validate → admit): before the zoo model is built,
    a group size that does not divide its widths is refused in one line, and nothing is built."""
    from moeq.contract.errors import RecipeError
    from moeq.db.store import Store
    from moeq.jobs.admission import admit
    from moeq.jobs.settings import load_settings

    settings = load_settings()
    assert not (settings.zoo_dir / "tiny-deepseek_v2").exists()
    store = Store(settings.database_url)
    with pytest.raises(RecipeError) as err:
        admit(settings, store, {"model": "tiny-deepseek_v2", "weights": {"bits": 4, "group_size": 64}}, None)
    line = str(err.value)
    assert "\n" not in line and "moe_intermediate_size = 48" in line and "kv_lora_rank (kv_b_proj) = 32" in line
    assert line.endswith("group sizes that fit every width: 16, 8, channel")
    admit(settings, store, {"model": "tiny-deepseek_v2", "weights": {"bits": 4, "group_size": 16}}, None)
    assert not (settings.zoo_dir / "tiny-deepseek_v2").exists()
