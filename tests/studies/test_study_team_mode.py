"""Team mode: a study belongs to a project; only its members see, launch, cancel or re-run it."""

from __future__ import annotations

import json

import pytest

from moeq.app.services import AppServices
from moeq.app.study_services import StudyServices
from moeq.db.repository.studies import StudyNotFound
from moeq.db.repository.users import AuthError, add_member, ensure_user
from moeq.db.store import Store
from moeq.jobs.settings import load_settings

BASE = {"model": "tiny-mixtral", "techniques": ["rtn"], "eval": {"source": "random", "tasks": [], "ppl_windows": 2,
                                                                  "seq_len": 32}}


@pytest.fixture()
def team(tmp_path):
    url = f"sqlite:///{tmp_path / 'team.sqlite'}"
    settings = load_settings({"MOEQ_HOME": str(tmp_path), "MOEQ_DATABASE_URL": url, "MOEQ_AUTH": "1"})
    svc = AppServices(settings=settings, store=Store(url))
    with svc.store.session() as s:
        ensure_user(s, "alice", "alice-password")
        ensure_user(s, "bob", "bob-password")
        add_member(s, "vision", "alice")
        add_member(s, "moe", "bob")
    yield StudyServices(svc)
    svc.store.dispose()


def test_studies_are_seen_and_acted_on_only_by_project_members(team):
    with pytest.raises(AuthError, match="not a member of project 'moe'"):
        team.launch("alice", "moe", "", json.dumps(BASE), "bits=W4A16g16,W2A16g16", "0")
    sid = team.launch("bob", "moe", "bob's", json.dumps(BASE), "bits=W4A16g16,W2A16g16", "0,1")
    assert team.show("bob", sid[:8])["n"] == 4 and team.show("bob", sid[:8])["project"] == "moe"
    assert [d["study_id"] for d in team.list("bob")] == [sid] and team.list("alice") == []
    for act in (team.show, team.cancel, team.rerun):
        with pytest.raises(StudyNotFound):
            act("alice", sid[:8])
    assert team.cancel("bob", sid[:8]) == 4 and team.rerun("bob", sid) == 4
