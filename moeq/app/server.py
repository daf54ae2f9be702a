"""`moeq serve`: the web workbench; in embedded mode it also starts, supervises and stops a local worker.

Before anything starts: the address must be free (else one line and a non-zero exit) and, without
MOEQ_AUTH, only a loopback address is served unless the operator sets MOEQ_ALLOW_UNAUTHENTICATED=1;
without MOEQ_AUTH every request also needs a per-start secret token (moeq.app.web_guard), and the
roots default to team mode's. One line at start says which protection is active.
SIGTERM and SIGINT stop the server and its worker together.
"""

from __future__ import annotations

import logging
import signal
import threading

from moeq.app.serve_guard import (TOKEN_FILE, ServeError, check_exposure, check_port_free,  # noqa: F401
                                  forget_url_token, new_url_token, shared_host_roots)
from moeq.app.services import AppServices
from moeq.app.web_guard import secret_prefix
from moeq.app.ui import build_ui
from moeq.db.store import Store
from moeq.jobs.settings import Settings, ensure_home

log = logging.getLogger(__name__)


def make_services(settings: Settings) -> AppServices:
    ensure_home(settings)
    return AppServices(settings=settings, store=Store(settings.database_url))


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 7860, worker: bool | None = None,
          block: bool = True, announce=log.info):
    """Launch the UI; returns (demo, cleanup) when `block` is False (tests). `announce` gets the
    start line (the URL, with its token when there are no logins) and any exposure warning."""

    def on_signal(signum, frame):  # SIGTERM like Ctrl-C: stop the UI, then clean up (worker included)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_signal) if block else None
    try:
        return _serve(settings, host, port, worker, block, announce)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _serve(settings: Settings, host: str, port: int, worker: bool | None, block: bool, announce):
    from moeq.app.http_app import ServerThread, build_app
    from moeq.jobs.embedded import LocalWorker
    from moeq.jobs.reaper import ReaperThread

    settings = shared_host_roots(settings)
    warning = check_exposure(settings, host)
    check_port_free(host, port)
    if warning:
        log.warning("%s", warning)
        announce(f"moeq: {warning}")
    svc = make_services(settings)
    if settings.auth:
        from moeq.app.login_guard import SessionRegistry

        svc.sessions = SessionRegistry()
    token = None if settings.auth else new_url_token(settings.home)
    demo = build_ui(svc)
    start_worker = settings.embedded if worker is None else worker
    local = LocalWorker(settings).start() if start_worker else None
    svc.worker = local
    reaper = ReaperThread(settings, svc.store).start()
    http = None
    done = threading.Event()

    def cleanup() -> None:
        if done.is_set():
            return
        done.set()
        try:
            if http is not None:
                http.stop()
        finally:
            reaper.stop()
            if local is not None:
                local.stop()
            svc.close()
            svc.store.dispose()
            if token is not None:
                forget_url_token(settings.home, token)

    try:
        http = ServerThread(build_app(svc, demo, host, port, token), settings, host, port).start()
    except BaseException as exc:
        cleanup()
        if isinstance(exc, OSError):
            raise ServeError(f"cannot start the web server on {host}:{port}: {exc}") from None
        raise
    announce(protection_line(settings, host, port, token))
    if token is not None and settings.home.stat().st_mode & 0o077:
        announce(f"moeq: WARNING: {settings.home} is open to other users (its runs, database and notes): "
                 f"chmod 700 it")
    if not block:
        return demo, cleanup
    try:
        while http.thread.is_alive():
            http.thread.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        cleanup()
    return None


def protection_line(settings: Settings, host: str, port: int, token: str | None) -> str:
    """What `moeq serve` says at start: where it is and what keeps other people out."""
    shown = f"[{host}]" if ":" in host else host
    mode = "embedded: SQLite + local worker" if settings.embedded else "team mode"
    if token is None:
        return f"moeq: serving http://{shown}:{port}{settings.root_path}/ ({mode}); protection: logins (MOEQ_AUTH=1)"
    return (f"moeq: serving http://{shown}:{port}{secret_prefix(token)}/ ({mode}); protection: no logins, a "
            f"secret path in this URL (its token also in {settings.home / TOKEN_FILE}, mode 0600); "
            f"set MOEQ_AUTH=1 for logins")
