"""Database fixtures: every repository test runs on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture()
def pg_url():
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    name = f"moeq_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'moeq.sqlite'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture()
def store(db_url):
    from db.store import Store

    s = Store(db_url)
    yield s
    s.dispose()
