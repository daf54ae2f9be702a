"""Team mode: project membership decides what a user sees, launches and cancels."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from moeq.app.services import AppServices
from moeq.db.repository.queries import RunFilter
from moeq.db.repository.runs import RunNotFound
from moeq.db.repository.users import AuthError, add_member, ensure_user
from moeq.db.store import Store
from moeq.jobs.settings import load_settings

RECIPE = {"model": "tiny-mixtral", "weights": {"bits": 4, "group_size": 16}}


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
    yield svc
    svc.store.dispose()


def _as(name):
    return SimpleNamespace(username=name)


def test_login_checks_hashed_passwords(team):
    assert team.authenticate("alice", "alice-password")
    assert not team.authenticate("alice", "bob-password") and not team.authenticate("eve", "x")
    with pytest.raises(AuthError):
        team.user_of(SimpleNamespace(username=None))


def test_users_see_launch_and_cancel_only_in_their_projects(team):
    from moeq.jobs.submit import create

    with pytest.raises(AuthError, match="not a member of project 'moe'"):
        team.launch(team.user_of(_as("alice")), "moe", RECIPE)
    alice_run = create(team.store, RECIPE, user="alice", project="vision")
    bob_run = create(team.store, RECIPE, user="bob", project="moe")
    rows, total = team.runs("alice", RunFilter())
    assert total == 1 and rows[0]["run_id"] == alice_run
    with pytest.raises(RunNotFound):
        team.run("alice", bob_run)
    with pytest.raises(RunNotFound):
        team.cancel("alice", bob_run)
    with pytest.raises(RunNotFound):
        team.compare("alice", [alice_run, bob_run])
    assert team.cancel("bob", bob_run) == "cancelled"
    assert team.run("alice", alice_run)["status"] == "queued"


def test_short_run_ids_resolve_only_within_the_users_projects(team):
    from moeq.jobs.submit import create

    alice_run = create(team.store, RECIPE, user="alice", project="vision")
    bob_run = create(team.store, RECIPE, user="bob", project="moe")
    assert team.run("alice", alice_run[:8])["run_id"] == alice_run
    assert team.resolve("alice", alice_run.upper()) == alice_run
    with pytest.raises(RunNotFound, match="matches no run"):
        team.resolve("alice", bob_run[:8])  # exists, but not in alice's projects
    with pytest.raises(RunNotFound, match="at least 4 characters"):
        team.resolve("bob", bob_run[:3])
    with pytest.raises(RunNotFound):
        team.resolve("bob", "%")  # no LIKE wildcards from user input
    assert [r["run_id"] for r in team.compare("bob", [bob_run[:8], bob_run])] == [bob_run, bob_run]
