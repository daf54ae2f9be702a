"""Round 2, item 8: a recipe cannot ask for unbounded work. Hardware-independent caps (MoQE variants,
router epochs × windows, EBSS beams × samples, tasks) hold everywhere the recipe is parsed; the
admission cost model weighs the tokens by the model's parameters against MOEQ_WORK_BUDGET; a config's
sizes (intermediate_size included) are bounded against the memory a worker has
(MOEQ_WORKER_MEMORY_GB). Each refusal is one line before anything is queued."""

from __future__ import annotations

import json

import pytest

from moeq.contract.errors import MoeqError, RecipeError
from moeq.jobs.admission import admit

BASE = {"model": "tiny-mixtral", "weights": {"bits": 4, "group_size": 16}, "techniques": ["rtn"]}
VARIANT = {"techniques": ["rtn"]}

ABSURD = {
    "2,000 MoQE variants x 10,000 epochs": (
        {**BASE, "moqe": {"variants": [VARIANT] * 2000, "epochs": 10_000}}, "moqe.variants: lists 2000 variants"),
    "16 MoQE variants x 10,000 epochs": (
        {**BASE, "moqe": {"variants": [VARIANT] * 16, "epochs": 10_000}}, "moqe.epochs: router training asks"),
    "EBSS width 64 x 100,000 samples": (
        {**BASE, "techniques": ["gptq"], "calibration": {"sampler": "ebss", "samples": 100_000, "seq_len": 128,
                                                         "ebss": {"width": 64}}},
        "calibration.ebss.width: asks for 819,200,000 tokens"),
    "500 copies of one task": ({**BASE, "eval": {"tasks": ["testbed"] * 500}}, "eval.tasks"),
    "33 different tasks": ({**BASE, "eval": {"tasks": [f"lm_eval:task_{i}" for i in range(33)]}},
                           "eval.tasks: lists 33 tasks; the limit is 32"),
}


@pytest.mark.parametrize("name", list(ABSURD))
def test_multiplied_work_is_refused_in_one_line(team, name):
    settings, store = team
    recipe, needle = ABSURD[name]
    with pytest.raises(MoeqError) as err:
        admit(settings, store, recipe, ("p1",))
    assert needle in str(err.value) and "\n" not in str(err.value) and len(str(err.value)) < 600


MIXTRAL = {"model_type": "mixtral", "num_hidden_layers": 32, "num_local_experts": 8, "num_experts_per_tok": 2,
           "hidden_size": 4096, "intermediate_size": 14336, "vocab_size": 32000}


def _settings(tmp_path, config: dict, **env):
    from moeq.db.store import Store
    from moeq.jobs.settings import load_settings

    model = tmp_path / "models" / "m"
    model.mkdir(parents=True, exist_ok=True)
    (model / "config.json").write_text(json.dumps(config))
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    settings = load_settings({"MOEQ_HOME": str(tmp_path / "home"), "MOEQ_DATABASE_URL": url, "MOEQ_AUTH": "1",
                              "MOEQ_MODEL_ROOTS": str(tmp_path / "models"), "MOEQ_WORKER_MEMORY_GB": "64", **env})
    return settings, Store(url), str(model)


CONFIGS = {
    # a streamed run holds a layer's experts a chunk at a time: what must fit is the rest plus one expert
    "65,536 experts x 4,096 layers": ({**MIXTRAL, "num_local_experts": 65_536, "num_hidden_layers": 4096},
                                      "the config does not match the weights"),
    "hidden_size 65,536 (one layer's attention alone is 34 GB)": ({**MIXTRAL, "hidden_size": 65_536},
                                                                  "decoder layers of"),
    "same, tiny layers (each fits, the whole does not)": (
        {**MIXTRAL, "num_local_experts": 65_536, "num_hidden_layers": 4096, "hidden_size": 64,
         "intermediate_size": 96}, "the config does not match the weights"),
    "intermediate_size 10^12": ({**MIXTRAL, "intermediate_size": 10**12}, "intermediate_size"),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_config_sizes_are_bounded_by_a_workers_memory(tmp_path, name):
    config, needle = CONFIGS[name]
    settings, store, model = _settings(tmp_path, config)
    with pytest.raises(MoeqError) as err:
        admit(settings, store, {**BASE, "model": model, "weights": {"bits": 4, "group_size": 32}})
    assert needle in str(err.value) and "\n" not in str(err.value)
    store.dispose()


def test_a_real_sized_model_fits_and_the_budget_is_the_operators(tmp_path):
    """Mixtral-8x7B sizes (~47 B parameters, ~94 GB in bf16; the config alone, no weights): on a 128 GB
    worker a plain run is admitted, and 16 GPTQ variants on 12.8 M calibration tokens each (~3e18
    parameter-tokens) are refused under the default budget (1e18) and admitted once the operator raises
    MOEQ_WORK_BUDGET. On a 64 GB worker the model itself does not fit and no weights back a streamed run."""
    plain = {**BASE, "weights": {"bits": 4, "group_size": 128}}
    heavy = {**plain, "calibration": {"samples": 100_000, "seq_len": 128},
             "moqe": {"variants": [{"techniques": ["gptq"]}] * 16}}
    settings, store, model = _settings(tmp_path, MIXTRAL, MOEQ_WORKER_MEMORY_GB="128")
    admit(settings, store, {**plain, "model": model})
    with pytest.raises(MoeqError) as err:
        admit(settings, store, {**heavy, "model": model})
    text = str(err.value)
    assert "parameter-tokens" in text and "MOEQ_WORK_BUDGET" in text and "\n" not in text
    store.dispose()
    roomy, store, model = _settings(tmp_path, MIXTRAL, MOEQ_WORKER_MEMORY_GB="128", MOEQ_WORK_BUDGET="1e20")
    admit(roomy, store, {**heavy, "model": model})
    small, store2, model = _settings(tmp_path, MIXTRAL)  # 64 GB: the bf16 model does not fit, no weights back it
    with pytest.raises(MoeqError, match="more than a worker's memory"):
        admit(small, store2, {**plain, "model": model})
    store.dispose()
    store2.dispose()


def test_the_worker_refuses_an_oversized_config_before_allocating(tmp_path):
    """A run stored or forged past admission: the worker's own check (before any model is built from
    the config) holds the config against the memory this worker has available."""
    from moeq.jobs.local import make_context
    from moeq.quant_core.model_io import check_loadable

    settings, store, model = _settings(tmp_path, CONFIGS["65,536 experts x 4,096 layers"][0])
    with pytest.raises(MoeqError, match="this worker's available memory") as err:
        check_loadable(tmp_path / "models" / "m", make_context(settings))
    assert "\n" not in str(err.value)
    store.dispose()


def test_an_evaluation_limit_of_a_quintillion_items_is_refused_in_one_line():
    """Found by the independent attack run: eval.limit had no upper bound and a worker built that many
    testbed items until its memory ran out."""
    from moeq.contract.limits import MAX_EVAL_LIMIT
    from moeq.contract.recipe import parse_recipe

    with pytest.raises(RecipeError) as exc:
        parse_recipe({"model": "tiny-mixtral", "eval": {"limit": 10**18}})
    assert exc.value.key == "eval.limit" and "\n" not in str(exc.value)
    assert parse_recipe({"model": "tiny-mixtral", "eval": {"limit": MAX_EVAL_LIMIT}}).eval.limit == MAX_EVAL_LIMIT


def test_one_launch_repeats_a_recipe_over_a_bounded_number_of_seeds():
    """Found by the independent attack run: a seeds field of 0..4999 queued 5000 runs."""
    from moeq.contract.errors import MoeqError
    from moeq.contract.grid import MAX_SEEDS, parse_seeds

    assert len(parse_seeds(",".join(map(str, range(MAX_SEEDS))))) == MAX_SEEDS
    with pytest.raises(MoeqError, match="at most"):
        parse_seeds(",".join(map(str, range(5000))))


def test_json_nested_too_deeply_is_one_plain_line():
    from moeq.app.launch_check import parse_json

    data, why = parse_json('{"a":' * 100000 + "1" + "}" * 100000)
    assert data is None and "recursion" not in why and "\n" not in why
