"""A database made by the 0002 schema (main before the one-result-shape change) upgrades with
`moeq db upgrade` and still shows its runs: on the compare page (the functions moeq/app/tabs/compare.py
calls) and in `moeq runs show / compare / list`.

The rows are a real database's (tests/db/data/schema_0002_runs.json: a GPTQ run and a MoQE run stored
by `moeq run` on main 2117eeb), loaded table by table into a database migrated to 0002."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from moeq.app.cli import main
from moeq.db.engine import make_engine
from moeq.db.migrate import current_revision, upgrade

DATA = json.loads((Path(__file__).parent / "data" / "schema_0002_runs.json").read_text())
RUNS = {r["techniques"]: r for r in DATA["tables"]["runs"]}
GPTQ, MOQE = RUNS["gptq"]["id"], RUNS["moqe"]["id"]
DROPPED = {"run_metrics", "routing_stats", "expert_stats", "artifacts", "models"}


def _typed(table: sa.Table, row: dict) -> dict:
    """A row as sqlite3 dumped it (JSON as text, datetimes as strings, booleans as 0/1), typed for `table`."""
    out = {}
    for name, value in row.items():
        kind = table.c[name].type
        if value is not None and isinstance(kind, sa.JSON):
            value = json.loads(value)
        elif value is not None and isinstance(kind, sa.DateTime):
            value = datetime.fromisoformat(value)
        elif value is not None and isinstance(kind, sa.Boolean):
            value = bool(value)
        out[name] = value
    return out


def _database_of_schema_0002(url: str) -> None:
    engine = make_engine(url)
    upgrade(engine, "0002")
    meta = sa.MetaData()
    meta.reflect(engine)
    with engine.begin() as conn:
        for name, rows in DATA["tables"].items():
            if rows:
                conn.execute(meta.tables[name].insert(), [_typed(meta.tables[name], r) for r in rows])
        if engine.dialect.name == "postgresql":  # rows came with their ids: move the sequences past them
            for name in ("users", "projects", "run_metrics", "routing_stats", "expert_stats", "run_progress"):
                conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                                     f"COALESCE((SELECT MAX(id) FROM {name}), 1))"))
    assert current_revision(engine) == "0002"
    assert {"run_metrics", "expert_stats"} <= set(sa.inspect(engine).get_table_names())
    engine.dispose()


@pytest.fixture()
def old_db(db_url, moeq_home, monkeypatch):
    _database_of_schema_0002(db_url)
    monkeypatch.setenv("MOEQ_DATABASE_URL", db_url)
    return db_url


def _compare_page(url: str, text: str) -> tuple:
    """What the Compare tab's button returns for `text` (the tab's own callback, moeq/app/tabs/compare.py)."""
    import gradio as gr

    from moeq.app.services import AppServices
    from moeq.app.tabs import compare
    from moeq.db.store import Store
    from moeq.jobs.settings import load_settings

    svc = AppServices(settings=load_settings(), store=Store(url))
    try:
        with gr.Blocks():
            tab = compare.build(svc)
        return tab["compare"](text, SimpleNamespace(username=None))
    finally:
        svc.store.dispose()


def test_moeq_db_upgrade_keeps_old_runs_on_the_compare_page_and_in_the_cli(old_db, capsys):
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out.strip().endswith("revision 0005")
    engine = make_engine(old_db)
    tables = set(sa.inspect(engine).get_table_names())
    with engine.connect() as conn:  # rows that reference runs survive the rebuilt runs table (SQLite)
        progress = conn.execute(sa.text("SELECT run_id, fraction, stage FROM run_progress ORDER BY id")).all()
    engine.dispose()
    assert not DROPPED & tables and {"runs", "users", "projects", "run_progress"} <= tables
    assert [tuple(p) for p in progress] == [(r["run_id"], r["fraction"], r["stage"])
                                           for r in DATA["tables"]["run_progress"]]

    (message, _, metrics, table, acc, routing, field, heat, heat_diff, _, load, trade_acc, _, runs, _) = \
        _compare_page(old_db, f"{GPTQ[:8]} {MOQE[:8]}")
    assert message.startswith("comparing 2 runs of tiny-mixtral")
    assert [r["run_id"] for r in runs] == [GPTQ, MOQE]
    assert GPTQ[:8] in metrics and MOQE[:8] in metrics and "accuracy add_mc" in metrics
    assert "W4A16 g16 gptq" in metrics and "MoQE[" in metrics and "moqe.variants" in table
    assert field == {"value": "calib_tokens", "__type__": "update"}  # uniform 4-bit: tokens are what varies
    old = json.loads(RUNS["gptq"]["result"])
    tokens = [[old["calibration"]["tokens_per_expert"][str(layer)][str(e)] for e in range(8)] for layer in range(3)]
    assert [list(map(list, t.z)) for t in heat.data] == [tokens, []]  # the MoQE run has no per-expert facts
    assert len(routing.data) == 1 and list(routing.data[0].y) == old["metrics"]["routing"]["topk_agreement"]
    assert len(load.data) == 2 and len(acc.data) >= 2 and len(trade_acc.data) == 2
    assert heat_diff.layout.annotations  # the MoQE run has no per-expert facts: said, not drawn

    gptq = runs[0]["result"]
    assert "experts" not in gptq["bits"] and "tokens_per_expert" not in gptq["calibration"]
    fell_back = [(r["layer"], r["expert"]) for r in gptq["expert_stats"] if r["fallback"]]
    assert fell_back == [(f["layer"], f["expert"]) for f in old["calibration"]["fallbacks"]]
    assert all(r["fallback_reason"] for r in gptq["expert_stats"] if r["fallback"])
    assert runs[1]["result"]["moqe"]["stored_weight_bits"] == json.loads(RUNS["moqe"]["result"])["moqe"][
        "stored_weight_bits"]

    assert main(["runs", "show", GPTQ[:8]]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"run {GPTQ}  succeeded") and "recipe  W4A16 g16 gptq router=fp" in shown
    assert f"calib   {len(fell_back)} expert(s) fell back: L{fell_back[0][0]}E{fell_back[0][1]}" in shown
    assert main(["runs", "show", MOQE[:8]]) == 0
    assert capsys.readouterr().out.startswith(f"run {MOQE}  succeeded")
    assert main(["runs", "show", GPTQ[:8], "--json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert as_json["run_id"] == GPTQ and len(as_json["expert_stats"]) == 24 and "experts" not in as_json["bits"]
    assert main(["runs", "compare", GPTQ[:8], MOQE[:8]]) == 0
    assert "acc add_mc" in capsys.readouterr().out
    assert main(["runs", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["total"] == 2 and {r["run_id"] for r in listed["runs"]} == {GPTQ, MOQE}


def test_downgrade_to_0002_and_back_keeps_runs_and_their_progress(old_db, capsys):
    assert main(["db", "upgrade"]) == 0 and main(["db", "downgrade", "0002"]) == 0
    assert capsys.readouterr().out.strip().endswith("revision 0002")
    engine = make_engine(old_db)
    with engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT COUNT(*) FROM runs WHERE result IS NOT NULL")).scalar()
        progress = conn.execute(sa.text("SELECT COUNT(*) FROM run_progress")).scalar()
    assert {"models", "run_metrics", "expert_stats"} <= set(sa.inspect(engine).get_table_names())
    engine.dispose()
    assert runs == 2 and progress == len(DATA["tables"]["run_progress"])
    assert main(["db", "upgrade"]) == 0 and main(["runs", "show", GPTQ[:8]]) == 0
    assert f"run {GPTQ}  succeeded" in capsys.readouterr().out
