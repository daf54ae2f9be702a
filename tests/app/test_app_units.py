"""Web app pieces without a browser: chart builders from result dicts, the compare table, the launch
form, and that the app never imports torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from moeq.app import charts
from moeq.app.compare_table import compare_html, differing_keys
from moeq.app.recipe_form import LaunchForm, form_to_recipe
from moeq.contract.recipe import parse_recipe


def _run(rid: str, bits: list[list[int]], acc: float, kl: float, avg_bits: float) -> dict:
    stats = [{"layer": layer, "expert": e, "bits": b, "calib_tokens": 10 * e, "weight_error": 0.01 * b}
             for layer, row in enumerate(bits) for e, b in enumerate(row)]
    return {"run_id": rid, "status": "succeeded", "model": "m", "recipe_summary": f"W{avg_bits}",
            "recipe": {"model": "m", "weights": {"bits": int(avg_bits), "group_size": 128}},
            "avg_weight_bits": avg_bits, "avg_accuracy": acc, "kl": kl, "perplexity": 5.0, "mean_topk_agreement": 0.9,
            "result": {"metrics": {"accuracy": {"a": acc, "b": acc / 2}, "fp_accuracy": {"a": 0.9, "b": 0.5},
                                   "routing": {"layers": [0, 1], "topk_agreement": [0.9, 0.8],
                                               "expert_load_fp": {"0": [0.5, 0.3, 0.2]},
                                               "expert_load_q": {"0": [0.4, 0.4, 0.2]}}},
                       "expert_stats": stats}}


RUNS = [_run("a" * 32, [[2, 3, 4], [4, 4, 2]], 0.8, 0.01, 3.0), _run("b" * 32, [[4, 4, 4], [4, 4, 4]], 0.85, 0.005, 4.0)]


def test_accuracy_bars_have_one_trace_per_run_plus_fp():
    fig = charts.accuracy_bars(RUNS)
    assert [t.type for t in fig.data] == ["bar", "scatter", "bar"]
    assert list(fig.data[1].y) == [0.9, 0.5]


def test_heatmap_is_layers_by_experts():
    fig = charts.expert_heatmap(RUNS[0], "bits")
    assert fig.data[0].type == "heatmap"
    assert [list(r) for r in fig.data[0].z] == [[2, 3, 4], [4, 4, 2]]
    assert list(fig.data[0].y) == ["L0", "L1"] and list(fig.data[0].x) == ["E0", "E1", "E2"]


def test_pareto_front_keeps_only_undominated_points():
    pts = [(2.0, 0.5), (2.5, 0.4), (3.0, 0.7), (4.0, 0.7), (4.0, 0.9)]
    assert charts.pareto_front(pts) == [(2.0, 0.5), (3.0, 0.7), (4.0, 0.9)]
    assert charts.pareto_front([(2, 0.3), (3, 0.1), (4, 0.2)], higher_is_better=False) == [(2, 0.3), (3, 0.1)]


def test_tradeoff_scatter_and_routing_lines_and_load():
    fig = charts.bits_tradeoff(RUNS, "avg_accuracy", {"a" * 32})
    assert list(fig.data[0].x) == [3.0, 4.0] and fig.data[1].name == "Pareto front"
    assert list(charts.routing_lines(RUNS).data[0].y) == [0.9, 0.8]
    load = charts.expert_load(RUNS[0])
    assert [t.name for t in load.data] == ["FP", "quantized"]


def test_compare_table_highlights_differing_recipe_keys():
    assert differing_keys(RUNS) == {"weights.bits"}
    html = compare_html(RUNS)
    assert html.count("class='diff'") == 1 and "weights.group_size" in html


def test_launch_form_builds_valid_recipes_including_presets():
    recipe = form_to_recipe(LaunchForm(model="testbed-mixtral", weight_bits=3, group_size="channel",
                                       techniques=["rotation", "agq (affinity-guided GPTQ)"]))
    parsed = parse_recipe(recipe)
    assert parsed.weights.group_size is None and parsed.weight_quantizer.affinity
    eaq = parse_recipe(form_to_recipe(LaunchForm(model="m", act_bits=4, preset="eaquant", techniques=[])))
    assert eaq.router.mode == "align" and eaq.calibration.balance.r == 2.0
    mixed = parse_recipe(form_to_recipe(LaunchForm(model="m", techniques=["gptq"], allocation="router_norm",
                                                   avg_bits=2.5, tiers="2,3,4")))
    assert mixed.allocation.tiers == (2, 3, 4)


def test_launch_form_errors_name_the_key():
    from moeq.contract.errors import RecipeError

    with pytest.raises(RecipeError, match="allocation.avg_bits"):
        parse_recipe(form_to_recipe(LaunchForm(model="m", allocation="router_norm", avg_bits=5, tiers="2,4")))


def test_the_web_app_never_imports_torch(tmp_path):
    code = ("import sys, os; os.environ['MOEQ_HOME']=sys.argv[1];"
            "from moeq.jobs.settings import load_settings; from moeq.app.server import make_services; from moeq.app.ui import build_ui;"
            "build_ui(make_services(load_settings())); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_launch_form_builds_a_moqe_recipe_from_variant_words():
    recipe = form_to_recipe(LaunchForm(model="testbed-mixtral", weight_bits=3, group_size="channel",
                                       moqe_variants="rtn; gptq; rotation+gptq; rtn+clip"))
    parsed = parse_recipe(recipe)
    names = [[t["name"] for t in v["techniques"]] for v in parsed.moqe.variants]
    assert names == [["rtn"], ["gptq"], ["rotation", "gptq"], ["rtn"]]
    assert parsed.moqe.variants[3]["techniques"][0]["clip_search"] is True
    assert all(v["weights"]["bits"] == 3 and v["weights"]["group_size"] is None for v in parsed.moqe.variants)
    with pytest.raises(ValueError, match="unknown 'awq'"):
        form_to_recipe(LaunchForm(model="m", moqe_variants="rtn; awq"))
