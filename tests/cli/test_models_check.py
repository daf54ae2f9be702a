"""Issue 27: `moeq models check DIR` (the preflight) and one-line refusals of techniques a family
cannot take — in the CLI (admission) and in the launch form's validation — for described families
that refuse a technique and for a family found from the model only."""

from __future__ import annotations

import json

import pytest

from moeq.app.cli import main
from moeq.app.form_check import model_problem
from moeq.quant_core.zoo.build import ensure_built

SMALL = {"calibration": {"source": "random", "samples": 4, "seq_len": 32},
         "eval": {"source": "random", "tasks": [], "ppl_windows": 2, "seq_len": 32}}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("check-zoo")
    for family in ("gpt_oss", "phimoe", "cohere2_moe", "glm4_moe"):
        ensure_built(f"tiny-{family}", root)
    return root


def _check(capsys, model_dir) -> dict:
    assert main(["models", "check", str(model_dir), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_preflight_reports_family_layers_experts_routing_parameters_and_techniques(moeq_home, zoo, capsys):
    from transformers import AutoModelForCausalLM

    r = _check(capsys, zoo / "tiny-glm4_moe")
    assert (r["family"], r["described"], r["moe_layers"], r["experts"], r["top_k"], r["shared_experts"]) == \
        ("glm4_moe", True, [1, 2], 8, 2, True)
    assert "sigmoid" in r["routing"] and "e_score_correction_bias" in r["routing"]
    model = AutoModelForCausalLM.from_pretrained(zoo / "tiny-glm4_moe")
    assert r["parameters"] == sum(t.numel() for t in model.state_dict().values())
    t = r["techniques"]
    assert t["gptq"]["applies"] and t["router_align"]["applies"]
    assert not t["smoothing"]["applies"] and "family glm4_moe cannot take smoothing" in t["smoothing"]["why"]
    assert main(["models", "check", str(zoo / "tiny-glm4_moe")]) == 0
    text = capsys.readouterr().out
    assert "family          glm4_moe" in text and "refused  smoothing — family glm4_moe" in text


def test_preflight_of_an_undescribed_family(moeq_home, zoo, capsys):
    r = _check(capsys, zoo / "tiny-cohere2_moe")
    assert r["family"] == "cohere2_moe" and not r["described"] and r["experts"] == 6 and r["top_k"] == 2
    applies = {f for f, t in r["techniques"].items() if t["applies"]}
    assert {"rtn", "gptq", "agq", "allocation", "evaluation", "routing_agreement"} <= applies
    assert not applies & {"smoothing", "rotation", "duquant", "router_align"}


def test_preflight_of_a_dense_model_is_one_line(moeq_home, tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 2}))
    assert main(["models", "check", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model_type 'llama' is not a supported MoE family" in err[0]


@pytest.mark.parametrize("family, techniques, router, message", [
    ("gpt_oss", "smoothquant", None, "family gpt_oss cannot take smoothing: experts carry biases"),
    ("phimoe", "rtn", "align", "family phimoe cannot take EAQuant router alignment: sparsemixer"),
    ("cohere2_moe", "rotation", None, "family cohere2_moe cannot take rotation: found from the model but not "
                                      "described"),
    ("cohere2_moe", "duquant", None, "family cohere2_moe cannot take smoothing"),  # the preset smooths first
    ("cohere2_moe", "rtn", "align", "family cohere2_moe cannot take EAQuant router alignment: found from the model"),
])
def test_refused_technique_is_one_line_in_the_cli_and_the_form(moeq_home, zoo, tmp_path, capsys, family,
                                                              techniques, router, message):
    recipe_file = tmp_path / "recipe.json"
    recipe_file.write_text(json.dumps({**SMALL, **({"router": router} if router else {})}))
    model = str(zoo / f"tiny-{family}")
    rc = main(["run", "--model", model, "--recipe", str(recipe_file), "--techniques", techniques])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("moeq:")]
    assert rc != 0 and len(err) == 1 and message in err[0], err
    recipe = {"model": model, **json.loads(recipe_file.read_text()), "techniques": [techniques]}
    problem = model_problem(model, (zoo,), recipe)
    assert problem is not None and problem.startswith("techniques: ") and f"family {family} cannot take" in problem
    assert "\n" not in problem
    assert model_problem(model, (zoo,), {"model": model, "techniques": ["gptq"]}) is None


def test_zoo_models_not_yet_built_are_checked_from_the_catalog(tmp_path):
    """Before a zoo model is built, its family (described or not) still refuses in the form."""
    for name, family in (("tiny-gpt_oss", "gpt_oss"), ("tiny-cohere2_moe", "cohere2_moe")):
        problem = model_problem(name, (tmp_path,), {"model": name, "techniques": ["rotation"]})
        assert problem is not None and problem.startswith(f"techniques: family {family} cannot take rotation")
