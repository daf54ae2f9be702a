"""Database fixtures: every repository test runs on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'moeq.sqlite'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture()
def store(db_url):
    from moeq.db.store import Store

    s = Store(db_url)
    yield s
    s.dispose()
