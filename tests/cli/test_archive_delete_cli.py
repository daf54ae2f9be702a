"""`moeq runs archive|delete`: archived runs leave `runs list` (and come back with --undo), deleted ones are
gone; an active run is refused with what to do; an unknown id changes nothing."""

from __future__ import annotations

from moeq.app.cli import main
from moeq.db.repository.runs import create_run
from moeq.db.store import Store
from moeq.jobs.settings import load_settings


def _runs(statuses: list[str]) -> list[str]:
    store = Store(load_settings().database_url)
    ids = []
    with store.session() as s:
        for st in statuses:
            run = create_run(s, {"model": "tiny-mixtral", "weights": {"bits": 3}, "seed": 7}, summary="W3A16 rtn",
                             techniques="rtn")
            run.status = st
            ids.append(run.id)
    store.dispose()
    return ids


def test_archive_hides_and_delete_removes(moeq_home, capsys):
    done, other, running = _runs(["succeeded", "failed", "running"])
    assert main(["runs", "archive", done[:8]]) == 0
    assert "archived" in capsys.readouterr().out
    assert main(["runs", "list"]) == 0
    out = capsys.readouterr().out
    assert done[:8] not in out and other[:8] in out and "(2 of 2)" in out
    assert " 7 " in out and "(W3)" in out  # the seed and the nominal bits are listed
    assert main(["runs", "list", "--archived"]) == 0
    assert done[:8] in capsys.readouterr().out
    assert main(["runs", "archive", "--undo", done[:8]]) == 0
    assert "restored" in capsys.readouterr().out
    assert main(["runs", "delete", running[:8]]) == 2
    assert "cancel it first" in capsys.readouterr().err
    assert main(["runs", "delete", other[:8], "ffffffff"]) == 2  # one unknown id: nothing is deleted
    capsys.readouterr()
    assert main(["runs", "delete", other[:8], done[:8]]) == 0
    assert capsys.readouterr().out.count("deleted") == 2
    assert main(["runs", "list"]) == 0
    out = capsys.readouterr().out
    assert done[:8] not in out and other[:8] not in out and running[:8] in out
