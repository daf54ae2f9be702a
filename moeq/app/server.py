"""`moeq serve`: the web workbench; in embedded mode it also starts, supervises and stops a local worker.

Before anything starts: the address must be free (else one line and a non-zero exit) and, without
MOEQ_AUTH, only a loopback address is served unless the operator sets MOEQ_ALLOW_UNAUTHENTICATED=1.
SIGTERM and SIGINT stop the server and its worker together.
"""

from __future__ import annotations

import logging
import signal
import threading

from moeq.app.serve_guard import ServeError, check_exposure, check_port_free  # noqa: F401 (re-exported)
from moeq.app.services import AppServices
from moeq.app.ui import TITLE, build_ui
from moeq.db.store import Store
from moeq.jobs.settings import Settings, ensure_home

log = logging.getLogger(__name__)


def make_services(settings: Settings) -> AppServices:
    ensure_home(settings)
    return AppServices(settings=settings, store=Store(settings.database_url))


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 7860, worker: bool | None = None,
          block: bool = True):
    """Launch the UI; returns (demo, cleanup) when `block` is False (tests)."""

    def on_signal(signum, frame):  # SIGTERM like Ctrl-C: stop the UI, then clean up (worker included)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_signal) if block else None
    try:
        return _serve(settings, host, port, worker, block)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _serve(settings: Settings, host: str, port: int, worker: bool | None, block: bool):
    from moeq.jobs.embedded import LocalWorker
    from moeq.jobs.reaper import ReaperThread

    warning = check_exposure(settings, host)
    check_port_free(host, port)
    if warning:
        log.warning("%s", warning)
        print(f"moeq: {warning}")
    svc = make_services(settings)
    app_kwargs = {}
    if settings.auth:
        from starlette.middleware import Middleware

        from moeq.app.login_guard import LoginGuardMiddleware, LoginThrottle, SessionRegistry

        svc.sessions = SessionRegistry()
        throttle = LoginThrottle(settings.login_max_failures, settings.login_lock_s)
        app_kwargs["middleware"] = [Middleware(LoginGuardMiddleware, throttle=throttle, sessions=svc.sessions)]
    demo = build_ui(svc)
    start_worker = settings.embedded if worker is None else worker
    local = LocalWorker(settings).start() if start_worker else None
    svc.worker = local
    reaper = ReaperThread(settings, svc.store).start()
    auth = svc.authenticate if settings.auth else None
    done = threading.Event()

    def cleanup() -> None:
        if done.is_set():
            return
        done.set()
        try:
            demo.close()
        finally:
            reaper.stop()
            if local is not None:
                local.stop()
            svc.close()
            svc.store.dispose()

    try:
        demo.launch(server_name=host, server_port=port, auth=auth, prevent_thread_lock=True, quiet=True,
                    auth_message=f"{TITLE}: sign in" if auth else None, show_error=True, app_kwargs=app_kwargs)
    except BaseException as exc:
        cleanup()
        if isinstance(exc, OSError):
            raise ServeError(f"cannot start the web server on {host}:{port}: {exc}") from None
        raise
    log.info("moeq web app on http://%s:%d (%s mode)", host, port, "embedded" if settings.embedded else "team")
    if not block:
        return demo, cleanup
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        cleanup()
    return None
