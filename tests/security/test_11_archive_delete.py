"""Archive and delete respect projects: only members of a run's project may archive it, only the user who
launched it (or an admin) may delete it, nobody can archive or delete a run that is still active, and
an archived run leaves the lists (it is kept; a deleted one is gone with its saved model)."""

from __future__ import annotations

import pytest

from moeq.app.services import AppServices
from moeq.contract.errors import MoeqError
from moeq.db.models import Run
from moeq.db.repository.queries import RunFilter
from moeq.db.repository.runs import create_run


def _run(store, user: str, project: str, status: str = "succeeded") -> str:
    with store.session() as s:
        run = create_run(s, {"model": "m"}, summary="W4A16", techniques="rtn", user=user, project=project)
        run.status = status
        return run.id


def test_only_members_archive_and_only_the_launcher_or_an_admin_deletes(team):
    settings, store = team
    svc = AppServices(settings=settings, store=store)
    with store.session() as s:
        from moeq.db.repository.users import add_member, ensure_user

        ensure_user(s, "carol", "carol-password")
        add_member(s, "p1", "carol")
    rid = _run(store, "alice", "p1")
    with pytest.raises(MoeqError, match="no run"):  # bob is not in p1: the run does not exist for him
        svc.archive("bob", rid)
    with pytest.raises(MoeqError, match="no run"):
        svc.delete("bob", rid)
    with pytest.raises(MoeqError, match="only alice .* or an admin"):  # carol is in p1 but did not launch it
        svc.delete("carol", rid)
    assert "archived" in svc.archive("carol", rid)
    rows, _ = svc.runs("alice", RunFilter())
    assert rid not in [r["run_id"] for r in rows]  # hidden from the list …
    rows, _ = svc.runs("alice", RunFilter(archived=True))
    assert [r["run_id"] for r in rows] == [rid]  # … and listed among the archived
    assert "deleted" in svc.delete("root", rid)  # an admin may
    with store.session() as s:
        assert s.get(Run, rid) is None


def test_an_active_run_is_neither_archived_nor_deleted(team):
    settings, store = team
    svc = AppServices(settings=settings, store=store)
    rid = _run(store, "alice", "p1", status="running")
    for action in (svc.archive, svc.delete):
        with pytest.raises(MoeqError, match="cancel it first"):
            action("alice", rid)
    with store.session() as s:
        assert s.get(Run, rid).status == "running" and not s.get(Run, rid).archived


def test_delete_removes_the_saved_model(team):
    settings, store = team
    svc = AppServices(settings=settings, store=store)
    rid = _run(store, "alice", "p1")
    with store.session() as s:
        s.get(Run, rid).save_model = True
    saved = settings.artifacts_dir / rid
    saved.mkdir(parents=True)
    (saved / "moeq.json").write_text("{}")
    assert "saved model" in svc.delete("alice", rid)
    assert not saved.exists()
