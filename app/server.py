"""`moeq serve`: the web workbench; in embedded mode it also starts and stops a local worker."""

from __future__ import annotations

import logging

from app.services import AppServices
from app.ui import TITLE, build_ui
from db.store import Store
from jobs.settings import Settings, ensure_home

log = logging.getLogger(__name__)


def make_services(settings: Settings) -> AppServices:
    ensure_home(settings)
    return AppServices(settings=settings, store=Store(settings.database_url))


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 7860, worker: bool | None = None,
          block: bool = True):
    """Launch the UI; returns (demo, cleanup) when `block` is False (tests)."""
    from jobs.embedded import LocalWorker
    from jobs.reaper import ReaperThread

    svc = make_services(settings)
    demo = build_ui(svc)
    start_worker = settings.embedded if worker is None else worker
    local = LocalWorker(settings).start() if start_worker else None
    reaper = ReaperThread(settings, svc.store).start()
    auth = svc.authenticate if settings.auth else None
    demo.launch(server_name=host, server_port=port, auth=auth, prevent_thread_lock=True, quiet=True,
                auth_message=f"{TITLE}: sign in" if auth else None, show_error=True)
    log.info("moeq web app on http://%s:%d (%s mode)", host, port, "embedded" if settings.embedded else "team")

    def cleanup() -> None:
        demo.close()
        reaper.stop()
        if local is not None:
            local.stop()
        svc.store.dispose()

    if not block:
        return demo, cleanup
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        cleanup()
    return None
