"""A Store = engine + session factory for one database URL; upgrades an empty database on open."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy.orm import Session

from moeq.db.engine import check_connection, make_engine, session_factory
from moeq.db.migrate import current_revision, upgrade


class Store:
    def __init__(self, url: str, *, auto_upgrade: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        check_connection(self.engine)
        if auto_upgrade and current_revision(self.engine) is None:
            upgrade(self.engine)
        self._sessions = session_factory(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on any error."""
        s = self._sessions()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def dispose(self) -> None:
        self.engine.dispose()
