"""Issue 25 item 9, file level: an export is 0600 in a 0700 folder, handed once to its owner only,
gone at shutdown; CSV cells a spreadsheet would evaluate are text."""

from __future__ import annotations

import csv
import io

from moeq.app.services import AppServices

FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+1", "-2+3", "@SUM(A1:A2)", "\t=1", "\r=1"]


def test_csv_cells_are_never_formulas(team):
    settings, store = team
    svc = AppServices(settings=settings, store=store)
    rows = [{"run_id": f, "model": "plain", "kl": -0.5, "avg_accuracy": 0.25} for f in FORMULAS]
    text = svc.export(rows, "csv").read_bytes().decode()
    cells = [row["run_id"] for row in csv.DictReader(io.StringIO(text, newline=""))]
    assert cells == ["'" + f for f in FORMULAS]
    assert ",-0.5," in text  # numbers stay numbers
    svc.close()


def test_export_files_are_private_once_and_removed(team):
    settings, store = team
    svc = AppServices(settings=settings, store=store)
    path = svc.export([{"run_id": "a"}], "json")
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    url, _ = svc.export_link("alice", [{"run_id": "b"}], "csv")
    name = url.rsplit("/", 1)[1]
    assert svc.exports.take(name, "bob") is None  # not someone else's
    assert svc.exports.take(name, "alice") is not None
    assert svc.exports.take(name, "alice") is None  # once
    folder = path.parent
    svc.close()
    assert not folder.exists()
