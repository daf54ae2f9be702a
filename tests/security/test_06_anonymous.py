"""Item 6: nothing about runs or local models before login; no unauthenticated exposure by accident."""

from __future__ import annotations

import urllib.request

import pytest

from moeq.app.server import ServeError, check_exposure, serve
from moeq.db.repository.runs import create_run
from moeq.jobs.settings import load_settings
from tests.security.conftest import free_port

SECRET = "/models/p1-secret-checkpoint"


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.read().decode("utf-8", "replace")


def test_anonymous_pages_contain_no_model_path(team, tmp_path):
    settings, store = team
    models = tmp_path / "models"
    (models / "local-secret-model").mkdir(parents=True)
    (models / "local-secret-model" / "config.json").write_text("{}")
    settings = load_settings({"MOEQ_HOME": str(settings.home), "MOEQ_DATABASE_URL": settings.database_url,
                              "MOEQ_AUTH": "1", "MOEQ_MODEL_ROOTS": str(models)})
    with store.session() as s:
        create_run(s, {"model": SECRET}, summary="W4A16", techniques="rtn", user="alice", project="p1")
    port = free_port()
    demo, cleanup = serve(settings, port=port, worker=False, block=False)
    try:
        base = f"http://127.0.0.1:{port}"
        pages = [_get(base + path) for path in ("/", "/config", "/gradio_api/info", "/info")]
    finally:
        cleanup()
    assert "auth_required" in pages[0]  # the login page was served
    for page in pages:
        assert "p1-secret-checkpoint" not in page and "local-secret-model" not in page


def test_filter_choices_are_the_users_own(team):
    from moeq.app.services import AppServices

    settings, store = team
    with store.session() as s:
        create_run(s, {"model": SECRET}, summary="x", techniques="rtn", user="alice", project="p1")
    svc = AppServices(settings=settings, store=store)
    assert SECRET in svc.filter_values("alice")["model"]
    assert SECRET not in svc.filter_values("bob")["model"]


def test_no_login_refuses_a_public_address_unless_allowed(tmp_path):
    team_no_auth = load_settings({"MOEQ_HOME": str(tmp_path), "MOEQ_BROKER_URL": "redis://127.0.0.1:6379/0"})
    with pytest.raises(ServeError, match="without logins"):
        check_exposure(team_no_auth, "0.0.0.0")
    assert "WARNING" in check_exposure(team_no_auth, "127.0.0.1")
    allowed = load_settings({"MOEQ_HOME": str(tmp_path), "MOEQ_BROKER_URL": "redis://127.0.0.1:6379/0",
                             "MOEQ_ALLOW_UNAUTHENTICATED": "1"})
    assert "WITHOUT logins" in check_exposure(allowed, "0.0.0.0")
    assert check_exposure(load_settings({"MOEQ_HOME": str(tmp_path), "MOEQ_AUTH": "1"}), "0.0.0.0") is None
