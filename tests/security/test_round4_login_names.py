"""Round 4, hole 7: a login name with a NUL byte (`alice%00`) or other control characters, or an
absurd length, is an unknown user — checked before any database query, on the same path (a dummy
password check) — instead of a PostgreSQL error, a 500 and a traceback in the log."""

from __future__ import annotations

import logging

import pytest

from moeq.app.services import AppServices
from moeq.db.repository.users import MAX_LOGIN_NAME, ensure_user, plausible_name
from moeq.db.store import Store
from moeq.jobs.settings import load_settings

HOSTILE = ["alice\x00", "al\x00ice", "alice\n", "alice\x1b[2J", "a" * (MAX_LOGIN_NAME + 1), ""]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_not_plausible(name):
    assert not plausible_name(name)


def test_ordinary_names_are_plausible():
    assert all(plausible_name(n) for n in ("alice", "bob.smith", "Zoë", "a" * MAX_LOGIN_NAME))


def test_a_nul_byte_in_the_login_name_is_a_failed_login_on_postgresql(tmp_path, pg_url, caplog):
    settings = load_settings({"MOEQ_HOME": str(tmp_path), "MOEQ_DATABASE_URL": pg_url, "MOEQ_AUTH": "1"})
    svc = AppServices(settings=settings, store=Store(pg_url))
    with svc.store.session() as s:
        ensure_user(s, "alice", "alice-password")
    try:
        with caplog.at_level(logging.WARNING):
            assert [svc.authenticate(n, "alice-password") for n in ("alice\x00", "alice\x1b")] == [False, False]
        assert svc.authenticate("alice", "alice-password")
        assert "Traceback" not in caplog.text and "psycopg" not in caplog.text
    finally:
        svc.store.dispose()
