"""The HTTP application `moeq serve` runs: a small Starlette/FastAPI parent with moeq's guards, the
export download route, and the Gradio workbench mounted at `/`; served by uvicorn in a thread.

Order of the middleware, outermost first: BodyLimit (request bodies: small without credentials,
MOEQ_MAX_BODY_MB with them), RequestGuard (Host, Origin, uploads, URL token), the
CORS allow-list (Starlette's CORSMiddleware: only MOEQ_ALLOWED_ORIGINS get an answer they may read;
with it present Gradio does not add its own), then with logins the session gate (moeq.app.session_gate:
only the login page without a session; streams per client capped) and the login guard. Uvicorn believes
X-Forwarded-For only from MOEQ_TRUSTED_PROXIES (none by default: the client address is the socket's).
"""

from __future__ import annotations

import logging
import threading
import time
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.middleware.cors import CORSMiddleware

from moeq.app.serve_guard import is_loopback
from moeq.app.services import AppServices
from moeq.db.repository.users import LOCAL_USER

log = logging.getLogger(__name__)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def allowed_hosts(settings, host: str) -> tuple[str, ...]:
    if settings.allowed_hosts:
        return settings.allowed_hosts
    if is_loopback(host):
        return (*LOOPBACK_NAMES, host.lower())
    return ()  # any Host: the operator knows the public name; Origin is still checked against it


def build_app(svc: AppServices, demo, host: str, port: int, token: str | None):
    import gradio as gr

    from moeq.app.login_guard import LoginGuardMiddleware, LoginThrottle
    from moeq.app.body_limit import BodyLimit
    from moeq.app.web_guard import RequestGuard

    settings = svc.settings
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/moeq/export/{name}")
    def download(name: str, request: Request):
        user = _user_of(svc, request.cookies)
        got = svc.exports.take(name, user) if user else None
        if got is None:  # unknown, expired, already taken, or someone else's: all look the same
            return JSONResponse({"detail": "no such export (each link works once, for its owner)"}, 404)
        data, filename = got
        media = "application/json" if filename.endswith(".json") else "text/csv"
        return Response(data, media_type=media, headers={"content-disposition": f'attachment; filename="{filename}"',
                                                         "cache-control": "no-store"})

    if settings.auth:
        from moeq.app.session_gate import SessionGate

        from moeq.app.known_device import load_key

        throttle = LoginThrottle(settings.login_max_failures, settings.login_lock_s)
        app.add_middleware(LoginGuardMiddleware, throttle=throttle, sessions=svc.sessions,
                           device_key=load_key(settings.home))
        app.add_middleware(SessionGate, user_of=_session_user(svc), max_streams=settings.max_streams_per_client)
    app.add_middleware(CORSMiddleware, allow_origins=list(settings.allowed_origins), allow_credentials=True,
                       allow_methods=["GET", "POST"], allow_headers=["*"])
    app.add_middleware(RequestGuard, allowed_hosts=allowed_hosts(settings, host),
                       allowed_origins=settings.allowed_origins, url_token=token,
                       root_path=settings.root_path if token is None else "")
    app.add_middleware(BodyLimit, limit_bytes=int(settings.max_body_mb * 2**20),
                       has_credentials=_credentials_check(svc, token))
    from moeq.app.ui import TITLE

    from moeq.app.password_checks import threaded_auth

    auth = threaded_auth(svc.authenticate) if settings.auth else None
    return gr.mount_gradio_app(app, demo, path="/", server_name=host, server_port=port, auth=auth,
                               auth_message=f"{TITLE}: sign in" if auth else None, show_error=True,
                               max_file_size=1)


def _user_of(svc: AppServices, cookies: dict) -> str | None:
    """The user of a plain HTTP request: the local user without logins (the URL token was checked),
    else the owner of a live session token under Gradio's exact cookie names."""
    if not svc.settings.auth:
        return LOCAL_USER
    if svc.sessions is None:
        return None
    token = svc.sessions.token_of(cookies)
    owner = svc.sessions.owner(token) if token else None
    return owner if owner and svc.session_valid(token, owner) else None


def _session_user(svc: AppServices):
    """(scope, headers) -> the user of the live session in the request's cookies, or None."""
    from http.cookies import SimpleCookie

    def user(scope, headers: dict) -> str | None:
        jar = SimpleCookie()
        try:
            jar.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is no session
            return None
        return _user_of(svc, {k: m.value for k, m in jar.items()})

    return user


def _credentials_check(svc: AppServices, token: str | None):
    """For the body limit: does a request carry the secret (no logins) or a live session (logins)?"""
    from moeq.app.web_guard import has_secret

    session_user = _session_user(svc)

    def check(scope, headers: dict) -> bool:
        if token is not None:
            return has_secret(scope, headers, token)
        return session_user(scope, headers) is not None

    return check


class ServerThread:
    """uvicorn in a daemon thread, with moeq's proxy settings; `stop()` waits for it."""

    def __init__(self, app, settings, host: str, port: int) -> None:
        import uvicorn

        trusted = list(settings.trusted_proxies)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                proxy_headers=bool(trusted), forwarded_allow_ips=trusted or None,
                                server_header=False, timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="moeq-http", daemon=True)

    def start(self, timeout: float = 60.0) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise OSError("the web server stopped while starting (see the log)")
            if time.monotonic() > deadline:
                raise OSError("the web server did not start in time")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
