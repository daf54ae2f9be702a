"""A run is named by what ran: all-weights bits beside the recipe's nominal bits, and its seed — in the
run dict (so CSV/JSON exports), the tick list / legends, the CLI list and compare header."""

from __future__ import annotations

import csv

from moeq.app.run_label import bits_text, run_title
from moeq.app.services import AppServices
from moeq.app.summary import format_compare
from moeq.db.repository.queries import RunFilter
from moeq.db.repository.results import nominal_bits
from moeq.db.repository.runs import create_run
from moeq.db.store import Store
from moeq.jobs.settings import load_settings

MIXED = {"model": "m", "weights": {"bits": 3}, "seed": 5,
         "allocation": {"method": "router_norm", "avg_bits": 3.0, "tiers": [2, 4], "other_bits": 4}}


def test_nominal_bits_say_what_the_recipe_asked_for():
    assert nominal_bits({"weights": {"bits": 4}}) == "W4"
    assert nominal_bits(MIXED) == "W3 mixed W2-W4, others W4"
    assert nominal_bits({"moqe": {"variants": [{"weights": {"bits": 2}}, {"weights": {"bits": 3}}]}}) == "W2/W3"


def test_the_seed_and_both_bits_reach_titles_exports_and_the_cli(moeq_home):
    settings = load_settings()
    store = Store(settings.database_url)
    with store.session() as s:
        run = create_run(s, MIXED, summary="W3A16 g128 rtn router=fp alloc=router_norm@3.0", techniques="rtn")
        run.status, run.avg_weight_bits = "succeeded", 3.111
    svc = AppServices(settings=settings, store=store)
    rows, _ = svc.runs("local", RunFilter())
    row = rows[0]
    assert row["seed"] == 5 and row["nominal_bits"] == "W3 mixed W2-W4, others W4"
    assert bits_text(row) == "3.111 bits (nominal W3 mixed W2-W4, others W4)"
    assert run_title(row).endswith("· m · W3A16 g128 rtn router=fp alloc=router_norm@3.0 · "
                                   "3.111 bits (nominal W3 mixed W2-W4, others W4) · seed 5")
    with open(svc.export(rows, "csv"), newline="") as f:
        exported = next(csv.DictReader(f))
    assert exported["seed"] == "5" and exported["nominal_bits"].startswith("W3 mixed")
    text = format_compare([row, {**row, "run_id": "f" * 32, "seed": 6}])
    assert "seed 5" in text.splitlines()[0] and "seed 6" in text.splitlines()[0]
    svc.close()
    store.dispose()


def test_model_paths_show_their_distinguishing_end_in_the_runs_table():
    from moeq.app.run_label import MODEL_LABEL_CHARS, model_label
    from moeq.app.tabs.runs import _cell

    assert model_label("testbed-mixtral") == "testbed-mixtral"
    assert model_label("/data/ckpt/mixtral-8x7b-it") == "…/ckpt/mixtral-8x7b-it"
    a, b = (model_label(f"/tmp/nc/model-qwen3-30b-a3b-{v}") for v in ("instruct", "base"))
    assert a != b and a.endswith("instruct") and b.endswith("base")
    assert all(len(model_label(p)) <= MODEL_LABEL_CHARS for p in ("/a/" + "x" * 80, "y" * 90, "/" * 40))
    assert _cell("model", {"model": "/data/ckpt/mixtral-8x7b-it"}) == "…/ckpt/mixtral-8x7b-it"
