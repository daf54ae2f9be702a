"""Adding a technique is one config + one apply function + one registry line (docs/adding_a_technique.md):
a technique registered here, in the test, reaches the recipe parser, the launch form, the CLI help,
the run tags and the layer walk — without touching moeq/app/ or moeq/jobs/ — and is gone again afterwards."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from moeq.contract.errors import RecipeError
from moeq.contract.recipe import parse_recipe, recipe_summary, technique_to_dict
from moeq.contract.techniques import Technique, registered
from moeq.contract.vocabulary import form_labels, recipe_tags


@dataclass(frozen=True)
class NudgeConfig:
    """A do-nothing layer technique: counts the sites the walk calls it at."""

    strength: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise RecipeError("strength", "must be in [0, 1]")


CALLS: list[tuple[str, int]] = []


def apply_nudge(q, cfg: NudgeConfig):
    from moeq.quant_core.apply.hooks import LayerHooks

    class NudgeHooks(LayerHooks):
        def attention(self, i, layer, attn, batches, stats, prefix):
            CALLS.append(("attention", i))
            return stats, False

        def moe_input(self, i, block, site, prefix):
            CALLS.append(("moe_input", i))

    return NudgeHooks()


NUDGE = Technique("nudge", NudgeConfig, "layer", apply_nudge, needs_calibration=True)


def test_a_registered_technique_is_parsed_ordered_and_tagged():
    with registered(NUDGE):
        r = parse_recipe({"model": "m", "techniques": ["gptq", {"name": "nudge", "strength": 0.25}, "rotation"]})
        assert [technique_to_dict(t)["name"] for t in r.techniques] == ["rotation", "nudge", "gptq"]
        assert r.technique(NudgeConfig) == NudgeConfig(0.25) and r.needs_calibration
        assert recipe_tags(r) == "rotation,nudge,gptq"
        assert "nudge" in recipe_summary(r)
        with pytest.raises(RecipeError, match=r"techniques\[0\]\.strength: must be in \[0, 1\]"):
            parse_recipe({"model": "m", "techniques": [{"name": "nudge", "strength": 2.0}]})
        with pytest.raises(RecipeError, match=r"techniques\[0\]\.bogus: unknown key"):
            parse_recipe({"model": "m", "techniques": [{"name": "nudge", "bogus": 1}]})
    with pytest.raises(RecipeError, match="unknown technique 'nudge'"):
        parse_recipe({"model": "m", "techniques": ["nudge"]})


def test_a_registered_technique_appears_in_the_launch_form_and_the_cli_help(tmp_path):
    import gradio as gr

    from moeq.app.cli import build_parser
    from moeq.app.recipe_form import LaunchForm, form_to_recipe
    from moeq.app.services import AppServices
    from moeq.app.tabs import launch
    from moeq.db.store import Store
    from moeq.jobs.settings import load_settings

    def run_help() -> str:
        sub = next(a for a in build_parser()._actions if a.dest == "command")
        return sub.choices["run"].format_help() + sub.choices["submit"].format_help()

    settings = load_settings({"MOEQ_HOME": str(tmp_path), "MOEQ_DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite'}"})
    svc = AppServices(settings=settings, store=Store(settings.database_url))
    assert "nudge" not in form_labels() and "nudge" not in run_help()
    with registered(NUDGE):
        assert "nudge" in form_labels()
        recipe = form_to_recipe(LaunchForm(model="testbed-mixtral", techniques=["nudge", "gptq"]))
        assert recipe["techniques"] == [{"name": "nudge"}, {"name": "gptq"}]
        assert "nudge" in run_help()
        with gr.Blocks():
            tab = launch.build(svc)
        boxes = next(c for c in tab["form_inputs"] if isinstance(c, gr.CheckboxGroup))
        assert "nudge" in [value for _, value in boxes.choices]
    assert "nudge" not in form_labels() and "nudge" not in run_help()
    svc.store.dispose()


def test_the_layer_walk_dispatches_a_registered_technique(tmp_path):
    import torch

    from moeq.quant_core.zoo.build import ensure_built
    from tests.quant_core.helpers import quantize_tiny

    zoo = tmp_path / "zoo"
    ensure_built("tiny-mixtral", zoo)
    recipe = {"weights": {"bits": 4, "group_size": 32}, "techniques": ["rtn"], "seed": 0}
    _, plain, _, _ = quantize_tiny(zoo, "mixtral", recipe, tmp_path)
    CALLS.clear()
    with registered(NUDGE):
        _, nudged, moe, _ = quantize_tiny(zoo, "mixtral", {**recipe, "techniques": ["rtn", "nudge"]}, tmp_path)
    layers = len(moe.layers)
    assert [c for c in CALLS if c[0] == "attention"] == [("attention", i) for i in range(layers)]
    assert [c for c in CALLS if c[0] == "moe_input"] == [("moe_input", i) for i in sorted(moe.blocks)]
    for (name, a), b in zip(plain.state_dict().items(), nudged.state_dict().values()):  # hooks that change
        assert torch.equal(a, b), name  # nothing leave the quantized model exactly as without them
