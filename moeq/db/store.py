"""A Store = engine + session factory for one database URL; upgrades an empty database on open."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy.orm import Session

from moeq.db.engine import check_connection, make_engine, session_factory
from moeq.db.migrate import current_revision, upgrade

log = logging.getLogger(__name__)


class Store:
    def __init__(self, url: str, *, auto_upgrade: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        check_connection(self.engine)
        if auto_upgrade and current_revision(self.engine) is None:
            upgrade(self.engine)
        self._sessions = session_factory(self.engine)
        if auto_upgrade:
            self.end_dead_runs()

    def end_dead_runs(self) -> None:
        """Every process that opens the store ends the `moeq run` runs of this host whose process died
        (SIGKILL, crash): they would otherwise say "running" forever. A database not yet upgraded to the
        owner columns is left alone (`moeq db upgrade`)."""
        from sqlalchemy.exc import SQLAlchemyError

        from moeq.db.repository.owners import end_dead_cli_runs

        s = self._sessions()  # not self.session(): a subclass may not be ready while __init__ runs
        try:
            end_dead_cli_runs(s)
            s.commit()
        except SQLAlchemyError as exc:
            s.rollback()
            log.warning("could not check for interrupted runs (`moeq db upgrade`?): %s", exc)
        finally:
            s.close()

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
