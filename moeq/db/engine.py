"""Engine and sessions from a database URL (SQLite file by default, PostgreSQL for teams)."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from moeq.contract.errors import MoeqError


class DatabaseError(MoeqError):
    """The database is unreachable or unusable; the message names the URL (without password)."""


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def private_sqlite_file(path: Path) -> None:
    """Create a SQLite database that does not exist yet private to its owner: its folder 0700 (when
    created here) and the file 0600 (SQLite gives its -wal/-shm files the file's mode). An existing
    file or folder keeps its mode. Every path that may create the database comes through here."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError:  # it exists, or cannot be created: SQLite opens it or says why (check_connection)
        return
    os.close(fd)  # an empty file is an empty SQLite database


def make_engine(url: str) -> Engine:
    """Engine for `url`; SQLite gets WAL, foreign keys and a busy timeout (several processes share it)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            private_sqlite_file(Path(parsed.database).expanduser())
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def check_connection(engine: Engine) -> None:
    """Raise DatabaseError with a clear message when the database cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = str(exc.orig if getattr(exc, "orig", None) is not None else exc).strip().splitlines()[0]
        raise DatabaseError(f"cannot reach the database at {safe_url(str(engine.url))}: {reason}") from None
