"""Pure pieces of the workbench: launch validation, re-run form filling, compare figures on one
colour scale, baseline deltas, honest progress (ETA, requeue), the run card."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from moeq.app.compare_charts import default_field, heatmap_differences, heatmaps, routing_lines
from moeq.app.compare_summary import metrics_html
from moeq.app.form_check import model_problem, read_form, recipe_errors
from moeq.app.recipe_fill import apply_overrides, recipe_to_form
from moeq.app.recipe_form import LaunchForm, form_to_recipe
from moeq.app.run_card import card_html
from moeq.contract.recipe import parse_recipe


def test_group_size_abc_is_one_clear_line_naming_the_field():
    form, errors = read_form(LaunchForm(model="testbed-mixtral", group_size="abc"))
    assert errors == ["group size: 'abc' is not a whole number (or 'channel' for one scale per output channel)"]
    form_to_recipe(form)  # the rest of the form still builds


def test_every_recipe_error_is_listed_in_the_forms_words():
    errors = recipe_errors({"model": "m", "weights": {"bits": 5, "group_size": 1}, "calibration": {"samples": 0},
                            "techniques": ["magic"]})
    assert [e.split(":")[0] for e in errors] == ["weight bits", "group size", "calibration samples", "techniques"]
    assert recipe_errors({"model": "m"}) == []


def test_a_missing_model_is_an_error():
    assert model_problem("/no/such/model", ()).startswith("model: model path '/no/such/model' does not exist")
    assert model_problem("testbed-mixtral", ()) is None


def test_the_launch_page_names_the_moqe_variant_its_family_refuses():
    variants = [{"techniques": ["rtn"]}, {"techniques": ["smooth", "rtn"]}]
    problem = model_problem("tiny-jetmoe", (), {"model": "tiny-jetmoe", "moqe": {"variants": variants}})
    assert problem.startswith("moqe.variants[1].techniques: family jetmoe cannot take smoothing")
    assert model_problem("tiny-jetmoe", (), {"model": "tiny-jetmoe", "moqe": {"variants": variants[:1] * 2}}) is None


RECIPES = [
    {"model": "testbed-mixtral", "weights": {"bits": 3, "group_size": 32, "symmetric": False},
     "techniques": [{"name": "rotation"}, {"name": "gptq", "affinity": True}],
     "calibration": {"samples": 48, "seq_len": 128, "sampler": "uniform", "source": "random"},
     "eval": {"tasks": ["testbed"], "limit": 8, "ppl_windows": 4, "seq_len": 128}, "seed": 3},
    {"model": "testbed-mixtral", "weights": {"bits": 4, "group_size": None}, "activations": {"bits": 8},
     "techniques": [{"name": "smooth", "aggregate": "expert", "alpha": 0.7}, {"name": "rtn"}],
     "allocation": {"method": "router_norm", "avg_bits": 3.0, "tiers": [2, 4]}, "router": "align"},
]


@pytest.mark.parametrize("recipe", RECIPES)
def test_rerun_fills_the_form_and_keeps_what_it_cannot_express(recipe):
    form, kept = recipe_to_form(recipe)
    rebuilt = apply_overrides(form_to_recipe(form), kept)
    assert parse_recipe(rebuilt).to_dict() == parse_recipe(recipe).to_dict()
    full = parse_recipe(recipe).to_dict()
    assert form.weight_bits == full["weights"]["bits"] and form.seed == full["seed"]
    assert form.eval_tasks == ",".join(full["eval"]["tasks"]) and form.calib_samples == full["calibration"]["samples"]
    # the form expresses the common fields itself; overrides only hold what it cannot say
    assert not {"weights.bits", "weights.group_size", "seed", "calibration.samples", "eval.limit"} & set(kept)


def test_rerun_edits_apply_on_top_of_the_recipe():
    form, kept = recipe_to_form(RECIPES[0])
    edited = apply_overrides(form_to_recipe(replace(form, weight_bits=2)), kept)
    assert edited["weights"]["bits"] == 2 and edited["eval"]["ppl_windows"] == 4


def _run(rid: str, bits: list[list[int]], tokens: list[list[int]], agree=(0.97, 0.98)) -> dict:
    stats = [{"layer": layer, "expert": e, "bits": bits[layer][e], "calib_tokens": tokens[layer][e],
              "weight_error": 0.01 * (e + 1)} for layer in range(2) for e in range(3)]
    return {"run_id": rid, "recipe_summary": f"recipe {rid}", "status": "succeeded", "avg_weight_bits": 4.0,
            "avg_accuracy": 0.8, "kl": 0.01, "perplexity": 3.0, "mean_topk_agreement": sum(agree) / 2,
            "result": {"expert_stats": stats, "tasks": [{"name": "t1", "acc": 0.8, "fp_acc": 0.9}],
                       "metrics": {"routing": {"layers": [0, 1], "topk_agreement": list(agree)}}}}


def test_heatmaps_of_all_runs_share_one_colour_scale_and_a_difference_view():
    a = _run("a" * 32, [[4, 4, 4], [4, 4, 4]], [[10, 20, 30], [5, 5, 5]])
    b = _run("b" * 32, [[4, 4, 4], [4, 4, 4]], [[100, 0, 30], [5, 50, 5]])
    assert default_field([a, b]) == "calib_tokens"  # bits are uniform: a flat block says nothing
    fig = json.loads(heatmaps([a, b], "calib_tokens").to_json())
    traces = [t for t in fig["data"] if t["type"] == "heatmap"]
    assert len(traces) == 2 and {t["coloraxis"] for t in traces} == {"coloraxis"}
    assert (fig["layout"]["coloraxis"]["cmin"], fig["layout"]["coloraxis"]["cmax"]) == (0, 100)
    diff = json.loads(heatmap_differences([a, b], "calib_tokens", a["run_id"]).to_json())
    (d,) = [t for t in diff["data"] if t["type"] == "heatmap"]
    assert d["z"][0] == [90, -20, 0] and diff["layout"]["coloraxis"]["cmin"] == -90
    hover = json.loads(heatmaps([a, b], "weight_error").to_json())["data"][0]["hovertemplate"]
    assert "‖W_q − W‖_F / ‖W‖_F" in hover


def test_routing_axis_fits_the_data():
    fig = json.loads(routing_lines([_run("a" * 32, [[4] * 3] * 2, [[1] * 3] * 2, (0.95, 0.99))]).to_json())
    lo, hi = fig["layout"]["yaxis"]["range"]
    assert 0.9 < lo < 0.95 and 0.99 < hi <= 1.001


def test_baseline_deltas_and_best_values_are_marked():
    a, b = _run("a" * 32, [[4] * 3] * 2, [[1] * 3] * 2), _run("b" * 32, [[4] * 3] * 2, [[1] * 3] * 2)
    b["kl"], b["avg_accuracy"] = 0.02, 0.9
    html = metrics_html([a, b], a["run_id"])
    assert "aaaaaaaa (baseline)" in html and "(+0.100)" in html and "(+0.0100)" in html
    assert "★ 0.900" in html and "★ 0.0100" in html


def test_the_run_card_shows_warnings_and_escapes_text():
    run = {"run_id": "c" * 32, "status": "succeeded", "model": "<b>m</b>", "recipe_summary": "W4", "user": "u",
           "project": "p", "created_at": "2026-01-01T00:00:00+00:00", "started_at": "2026-01-01T00:00:00+00:00",
           "finished_at": "2026-01-01T00:00:12+00:00", "attempts": 1,
           "result": {"warnings": ["90% of the evaluation text is unknown tokens"], "metrics": {}, "tasks": []}}
    html = card_html(run)
    assert "&lt;b&gt;m&lt;/b&gt;" in html and "moeq-warn" in html and "12s" in html


def test_the_run_card_shows_peak_memory_the_runs_table_leaves_out():
    run = {"run_id": "d" * 32, "status": "succeeded", "model": "m", "recipe_summary": "W4", "user": "u",
           "project": "p", "created_at": "2026-01-01T00:00:00+00:00", "attempts": 1,
           "peak_host_rss_mb": 1234.4, "peak_device_mb": None, "result": {"metrics": {}, "tasks": []}}
    assert "host 1,234 MB, GPU -" in card_html(run)
