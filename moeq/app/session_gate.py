"""With logins: nothing but the login page reaches Gradio without a session, and no one holds more
than a few streams open (ASGI middleware of `moeq serve`, inside the RequestGuard).

- **Session first**: an anonymous request may fetch the page itself (`/`, which Gradio answers with
  its login form), its assets (`/assets/…`, `/static/…`, `/theme.css`, `/favicon.ico`) and post the
  login form (`/login`, `/logout`); every other path — the whole Gradio API (`/gradio_api/…`,
  heartbeat and queue streams included), `/config`, files — answers 401 here, before Gradio opens a
  stream for it. (Round 4: 19,900 anonymous heartbeat streams from 127.0.10.x starved real logins.)
- **Streams per client**: a signed-in client (address and user) may hold at most
  `MOEQ_MAX_STREAMS_PER_CLIENT` (default 32) Gradio API GETs and WebSockets open at once — the
  page's heartbeat and queue streams are GETs that last; more answer 429.
"""

from __future__ import annotations

import threading
from collections import Counter

from starlette.concurrency import run_in_threadpool

from moeq.app.login_guard import get_route_path
from moeq.app.web_guard import refuse

ANONYMOUS_PATHS = ("", "/", "/login", "/logout", "/theme.css", "/favicon.ico")
ANONYMOUS_PREFIXES = ("/assets/", "/static/")
STREAM_PREFIX = "/gradio_api/"


def anonymous_allowed(path: str) -> bool:
    return path in ANONYMOUS_PATHS or path.startswith(ANONYMOUS_PREFIXES)


class SessionGate:
    def __init__(self, app, user_of, max_streams: int) -> None:
        """`user_of(scope, headers) -> str | None` (may block: it runs in a thread) names the user of
        a live session the request carries."""
        self.app, self.user_of, self.max_streams = app, user_of, max_streams
        self._open: Counter = Counter()
        self._lock = threading.Lock()

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = get_route_path(scope)
        if anonymous_allowed(path):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        user = await run_in_threadpool(self.user_of, scope, headers)
        if user is None:
            return await refuse(scope, receive, send, 401, "sign in first (this server needs a login)")
        streaming = scope["type"] == "websocket" or (scope.get("method") == "GET" and path.startswith(STREAM_PREFIX))
        if not streaming:
            return await self.app(scope, receive, send)
        key = ((scope.get("client") or ("?", 0))[0], user)
        with self._lock:
            if self._open[key] >= self.max_streams:
                full = True
            else:
                full = False
                self._open[key] += 1
        if full:
            return await refuse(scope, receive, send, 429, f"too many open streams from this client "
                                                            f"(at most {self.max_streams}: MOEQ_MAX_STREAMS_PER_CLIENT)")
        try:
            return await self.app(scope, receive, send)
        finally:
            with self._lock:
                self._open[key] -= 1
                if self._open[key] <= 0:
                    del self._open[key]

