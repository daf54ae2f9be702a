"""Paired differences where runs are compared: `moeq runs compare`, compare_runs (the API) and the
Compare page's paired table; seed repeats shown as a group with mean ± sd (n)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from moeq.app.cli import main
from moeq.contract.stats import paired_differences
from moeq.db.repository.queries import compare_runs
from moeq.db.repository.results import store_result
from moeq.db.repository.runs import claim_run, create_run
from moeq.db.store import Store
from tests.db.test_repository import RESULT

IDS = [f"i{k}" for k in range(60)]
A = [1] * 45 + [0] * 15
SAME = [1] * 44 + [0] * 1 + [1] * 1 + [0] * 14  # one item lost, one gained: noise
WORSE = [1] * 20 + [0] * 40  # 25 items lost: real


def _result(scores, ids, nll, seed, bits=4):
    recipe = {"model": "tiny-mixtral", "weights": {"bits": bits}, "seed": seed}
    return {**RESULT, "recipe": recipe,
            "metrics": {**RESULT["metrics"], "avg_accuracy": sum(scores) / len(scores), "kl": 0.01 * (6 - bits)},
            "tasks": [{"name": "add_mc", "kind": "mc", "acc": sum(scores) / len(scores), "fp_acc": 0.8, "n": 60,
                       "stderr": 0.05, "chance": 0.25, "item_ids": ids, "item_scores": scores}],
            "windows": {"ids": ["w0", "w1", "w2", "w3"], "nll": nll, "kl": [0.01, 0.02, 0.01, 0.02], "tokens": 31}}


@pytest.fixture()
def three_runs(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'moeq.sqlite'}"
    monkeypatch.setenv("MOEQ_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MOEQ_DATABASE_URL", url)
    store = Store(url)
    ids = []
    for bits, seed, scores, item_ids, nll in [(4, 0, A, IDS, [2.0, 2.1, 2.2, 2.3]), (4, 1, SAME, IDS, [2.0, 2.1, 2.25, 2.3]),
                                             (2, 0, WORSE, [f"x{k}" for k in range(60)], [3.0, 3.1, 3.2, 3.3])]:
        with store.session() as s:
            rid = create_run(s, {"model": "tiny-mixtral", "weights": {"bits": bits}, "seed": seed},
                             summary=f"W{bits}A16 rtn", techniques="rtn").id
            claim_run(s, rid, "h", "cpu")
            store_result(s, rid, _result(scores, item_ids, nll, seed, bits))
        ids.append(rid)
    yield store, ids
    store.dispose()


def test_compare_runs_carries_paired_differences_against_the_first(three_runs):
    store, ids = three_runs
    with store.session() as s:
        runs = compare_runs(s, ids)
        plain = compare_runs(s, ids, paired=False)
    assert runs[0]["paired"] is None and "paired" not in plain[0]
    seed = runs[1]["paired"]
    expected = paired_differences(runs[0]["result"], runs[1]["result"])
    assert seed["tasks"] == expected["tasks"] and seed["baseline"] == ids[0]
    assert seed["avg_accuracy"]["within_noise"] and seed["tasks"][0]["mcnemar_p"] == 1.0
    other = runs[2]["paired"]["tasks"][0]
    assert not other["paired"] and "different items" in other["reason"]


def test_runs_compare_prints_intervals_reasons_and_the_seed_group(three_runs, capsys):
    _, ids = three_runs
    assert main(["runs", "compare", ids[0][:8], ids[1][:8], ids[2][:8]]) == 0
    out = capsys.readouterr().out
    assert "paired differences against run " + ids[0][:8] in out and "2000 resamples" in out
    assert "within noise p=1" in out and "not paired: the runs scored" in out
    assert "repeats of one recipe over seeds" in out and "0.750 ± 0.000 (n=2)" in out  # 45/60 correct in both repeats


def test_compare_page_paired_table(three_runs):
    import gradio as gr

    from moeq.app.services import AppServices
    from moeq.app.tabs import compare
    from moeq.jobs.settings import load_settings

    store, ids = three_runs
    svc = AppServices(settings=load_settings(), store=store)
    with gr.Blocks():
        tab = compare.build(svc)
    *_, runs, _caption = tab["compare"](" ".join(i[:8] for i in ids), SimpleNamespace(username=None))
    html = tab["paired"](ids[0], runs)
    assert "id='compare-paired'" in html and "within noise" in html and "not paired" in html
    assert "id='compare-groups'" in html
    swapped = tab["paired"](ids[2], runs)  # another baseline: pairs recomputed against it
    assert f"against run {ids[2][:8]}" in swapped
