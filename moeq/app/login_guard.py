"""Login throttling (per user and per client address) and session revocation for `moeq serve`.

Gradio calls the auth function with only (username, password), so the per-address part and the
lock-out answer live in a small ASGI middleware in front of POST /login; it also records each
answer (200 = success, 400 = wrong credentials). Sessions: every cookie token is tied to the
password hash the user had when that token was issued; a changed password (or a removed user) ends
every older session at its next request.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from urllib.parse import parse_qs

WINDOW_S = 900.0  # failures older than this are forgotten
ADDRESS_FACTOR = 4  # an address may fail this many times more often than one user name


class LoginThrottle:
    """Counts failed logins per user name and per address; locks either for `lock_s` once it has
    `max_failures` (address: ADDRESS_FACTOR × as many) failures within WINDOW_S."""

    def __init__(self, max_failures: int = 5, lock_s: float = 300.0, clock=time.monotonic) -> None:
        self.max_failures, self.lock_s, self.clock = max_failures, lock_s, clock
        self._fails: dict[str, deque] = defaultdict(deque)
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def _limit(self, key: str) -> int:
        return self.max_failures * (ADDRESS_FACTOR if key.startswith("addr:") else 1)

    def retry_after(self, user: str, address: str) -> float:
        """Seconds until a login for (user, address) may be tried; 0 when it may be tried now."""
        now = self.clock()
        with self._lock:
            return max([0.0] + [self._locked_until.get(k, 0.0) - now for k in (f"user:{user}", f"addr:{address}")])

    def failed(self, user: str, address: str) -> None:
        now = self.clock()
        with self._lock:
            for key in (f"user:{user}", f"addr:{address}"):
                q = self._fails[key]
                q.append(now)
                while q and now - q[0] > WINDOW_S:
                    q.popleft()
                if len(q) >= self._limit(key):
                    self._locked_until[key] = now + self.lock_s
                    q.clear()

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._fails.pop(f"user:{user}", None)


class LoginGuardMiddleware:
    """ASGI middleware: refuses POST /login with 429 while the user or the address is locked, and
    feeds every login answer back into the throttle."""

    def __init__(self, app, throttle: LoginThrottle, sessions: "SessionRegistry | None" = None) -> None:
        self.app, self.throttle, self.sessions = app, throttle, sessions

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") != "/login":
            return await self.app(scope, receive, send)
        body = b""
        while True:  # buffer the (small) form to read the user name, then replay it
            message = await receive()
            body += message.get("body", b"")
            if len(body) > 65536:
                return await _answer(send, 413, "login form too large")
            if not message.get("more_body"):
                break
        user = (parse_qs(body.decode("utf-8", "replace")).get("username") or [""])[0].strip()
        address = (scope.get("client") or ("?", 0))[0]
        wait = self.throttle.retry_after(user, address)
        if wait > 0:
            return await _answer(send, 429, f"too many failed logins; try again in {wait:.0f} s")
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        status: dict = {"tokens": []}

        async def watch(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"set-cookie" and value.startswith(b"access-token"):
                        status["tokens"].append(value.split(b";", 1)[0].split(b"=", 1)[-1].decode())
            await send(message)

        await self.app(scope, replay, watch)
        if status.get("code") == 200:
            self.throttle.succeeded(user)
            if self.sessions is not None:
                for token in status["tokens"]:
                    self.sessions.issued(token, user)
        elif status.get("code") == 400:
            self.throttle.failed(user, address)


async def _answer(send, code: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": code,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class SessionRegistry:
    """token → the password hash its user had when it was issued; a different hash now = revoked."""

    def __init__(self) -> None:
        self._at_login: dict[str, str] = {}  # user → hash at the last successful login
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    def logged_in(self, user: str, password_hash: str) -> None:
        with self._lock:
            self._at_login[user] = password_hash

    def issued(self, token: str, user: str) -> None:
        """Tie a freshly issued token to the hash its user logged in with."""
        with self._lock:
            if user in self._at_login:
                self._tokens[token] = self._at_login[user]

    def valid(self, token: str | None, user: str, current_hash: str | None) -> bool:
        if current_hash is None:
            return False
        if token is None:
            return True  # no cookie to tie to (e.g. a direct API call already checked by gradio)
        with self._lock:
            issued = self._tokens.setdefault(token, self._at_login.get(user, current_hash))
            if issued != current_hash:
                self._tokens[token] = ""  # stays revoked even if the hash is restored
                return False
            return True
