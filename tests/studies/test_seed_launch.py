"""Repeats over seeds from the Launch form and `moeq submit --seeds`: one queued run per seed, shown as
one group by the runs list (mean ± sd over the succeeded ones, n)."""

from __future__ import annotations

from moeq.app.cli import main
from moeq.app.paired_view import format_groups, groups_html, seed_groups
from moeq.app.seed_launch import launch_seeds
from moeq.app.services import AppServices
from moeq.db.repository.queries import RunFilter
from moeq.db.store import Store
from moeq.jobs.settings import load_settings

RECIPE = {"model": "tiny-mixtral", "weights": {"bits": 4, "group_size": 16}, "techniques": ["rtn"],
          "eval": {"source": "random", "tasks": [], "ppl_windows": 2, "seq_len": 32}}


def test_form_and_cli_queue_one_run_per_seed_as_a_group(moeq_home, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOEQ_DATABASE_URL", f"sqlite:///{tmp_path / 'moeq.sqlite'}")
    settings = load_settings()
    svc = AppServices(settings=settings, store=Store(settings.database_url))
    message = launch_seeds(svc, "local", "default", RECIPE, False, "0,1,2")
    assert message.startswith("✓ queued 3 runs") and "(seed 2)" in message
    assert launch_seeds(svc, "local", "default", {**RECIPE, "weights": {"bits": 5}}, False, "0,1").startswith(
        "⚠ not launched (seed 0)")
    rows, total = svc.runs("local", RunFilter())
    assert total == 3 and sorted(r["recipe"]["seed"] for r in rows) == [0, 1, 2]
    groups = seed_groups(rows)
    assert len(groups) == 1 and len(groups[0]) == 3
    assert "seeds" in groups_html(rows) and "(n=" not in format_groups(rows).split("\n")[-1]  # none finished yet
    assert main(["submit", "--model", "tiny-mixtral", "--bits", "W4A16g16", "--techniques", "rtn",
                 "--seeds", "3,4"]) == 0
    assert len(capsys.readouterr().out.split()) == 2
    assert main(["runs", "list"]) == 0
    out = capsys.readouterr().out
    assert "repeats of one recipe over seeds" in out
    svc.close()
