"""Login throttling (per user and address, per address, a budget per user name, known devices) and
session revocation for `moeq serve`.

Gradio calls the auth function with only (username, password), so the per-address part and the
lock-out answer live in a small ASGI middleware in front of POST /login; it also records each
answer (200 = success, 400 = wrong credentials). The form is parsed by the same parser the login
route uses (Starlette's), and a form with a repeated field or a file part is refused, so the name
that is throttled is the name that logs in. Gradio's own login page posts multipart/form-data, so
that encoding is accepted alongside application/x-www-form-urlencoded; nothing else is. The session
cookies it answers with are rewritten to SameSite=Lax (Gradio sets None) and Path=<root path>
(MOEQ_ROOT_PATH, else /); over https Gradio's second, non-Secure cookie is dropped, so the session
is never sent over plain http (browsers send a host's cookies to all its ports).

Sessions: every token is registered when it is issued, with its user and the password hash the
user had then; an unregistered token, or one whose user's hash has changed since (a password reset,
a removed user), is refused — for good.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import defaultdict, deque

from starlette.datastructures import UploadFile
from starlette.requests import Request

from moeq.app import known_device
from moeq.app.body_limit import replaying

WINDOW_S = 900.0  # failures older than this are forgotten
ADDRESS_FACTOR = 4  # an address may fail this many times more often than with one user name
NAME_FACTOR = 4  # a name may fail this many times more often, from all unknown browsers together


class LoginThrottle:
    """Failed logins within WINDOW_S, counted when the attempt *starts* (a reservation, given back if
    the password was right), so parallel guesses cannot run past a limit:

    - per (user name, address): `max_failures` lock that name *from that address* for `lock_s`;
    - per address: ADDRESS_FACTOR × as many (any names) lock the address — spraying names from it;
    - per user name, from every address together: NAME_FACTOR × as many; beyond that, logins for
      the name are refused until old failures leave the window — guessing from many addresses is
      bounded, not just slowed;
    - a known device (a browser that signed in as that name before: moeq.app.known_device) counts
      only its own failures (`max_failures` lock it) and is exempt from the three above — so failing
      in a name, or from a shared address, never locks out a user returning on their own browser.
    """

    def __init__(self, max_failures: int = 5, lock_s: float = 300.0, clock=time.monotonic) -> None:
        self.max_failures, self.lock_s, self.clock = max_failures, lock_s, clock
        self._fails: dict[str, deque] = defaultdict(deque)  # key -> [time, attempt id]
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count()

    def _limits(self, user: str, address: str, device: str | None) -> dict[str, int]:
        m = self.max_failures
        if device is not None:
            return {f"dev:{user}\0{device}": m}
        return {f"pair:{user}\0{address}": m, f"addr:{address}": m * ADDRESS_FACTOR, f"user:{user}": m * NAME_FACTOR}

    def _wait(self, limits: dict[str, int], now: float) -> float:
        waits = [0.0]
        for key, limit in limits.items():
            waits.append(self._locked_until.get(key, 0.0) - now)
            q = self._fails.get(key)
            if not q:
                continue
            while q and now - q[0][0] > WINDOW_S:
                q.popleft()
            if len(q) >= limit:  # failures and attempts in flight
                waits.append(WINDOW_S - (now - q[0][0]) if key.startswith("user:") else 1.0)
        return max(waits)

    def begin(self, user: str, address: str, device: str | None = None) -> tuple[tuple | None, float]:
        """(ticket, 0) with the attempt counted as a failure until `end`, or (None, seconds to wait)."""
        now = self.clock()
        limits = self._limits(user, address, device)
        with self._lock:
            wait = self._wait(limits, now)
            if wait > 0:
                return None, wait
            attempt = next(self._ids)
            for key in limits:
                self._fails[key].append((now, attempt))
        return (attempt, limits), 0.0

    def end(self, ticket: tuple, outcome: str) -> None:
        """`outcome`: "ok" (right password), "failed" (wrong credentials) or "other" (no verdict)."""
        attempt, limits = ticket
        now = self.clock()
        with self._lock:
            for key, limit in limits.items():
                q = self._fails[key]
                if outcome != "failed":
                    q = self._fails[key] = deque(e for e in q if e[1] != attempt)
                elif not key.startswith("user:") and len(q) >= limit:
                    self._locked_until[key] = now + self.lock_s
                    q.clear()
                if not q:
                    self._fails.pop(key, None)
            if outcome == "ok":
                for key in limits:
                    if not key.startswith(("user:", "addr:")):
                        self._fails.pop(key, None)

    def retry_after(self, user: str, address: str, device: str | None = None) -> float:
        """Seconds until a login for (user, address[, device]) may be tried; 0 when it may be tried now."""
        with self._lock:
            return self._wait(self._limits(user, address, device), self.clock())

    def failed(self, user: str, address: str, device: str | None = None) -> None:
        """Record one failure (counted even past a limit)."""
        now = self.clock()
        limits = self._limits(user, address, device)
        with self._lock:
            attempt = next(self._ids)
            for key in limits:
                self._fails[key].append((now, attempt))
        self.end((attempt, limits), "failed")

    def succeeded(self, user: str, address: str) -> None:
        with self._lock:
            self._fails.pop(f"pair:{user}\0{address}", None)


class LoginGuardMiddleware:
    """ASGI middleware: reserves an attempt with the throttle before the password is checked (429
    when a limit is reached), gives it back on success, and sets the known-device cookie then."""

    def __init__(self, app, throttle: LoginThrottle, sessions: "SessionRegistry | None" = None,
                 device_key: bytes | None = None) -> None:
        self.app, self.throttle, self.sessions, self.device_key = app, throttle, sessions, device_key

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or get_route_path(scope).rstrip("/") != "/login":
            return await self.app(scope, receive, send)
        body = b""
        while True:  # buffer the (small) form to read the user name, then replay it
            message = await receive()
            body += message.get("body", b"")
            if len(body) > 65536:
                return await _answer(send, 413, "login form too large")
            if not message.get("more_body"):
                break
        replay = replaying(body, receive)

        user, problem = await _login_name(scope, body)
        if problem:
            return await _answer(send, 400, problem)
        address = (scope.get("client") or ("?", 0))[0]  # the socket's, unless uvicorn trusts a proxy
        cookies = b"; ".join(v for k, v in scope.get("headers", []) if k.lower() == b"cookie").decode("latin-1")
        device = known_device.device_of(self.device_key, cookies, user) if self.device_key else None
        ticket, wait = self.throttle.begin(user, address, device)
        if ticket is None:
            return await _answer(send, 429, f"too many failed logins; try again in {max(wait, 1):.0f} s")
        status: dict = {"tokens": []}
        https = scope.get("scheme") == "https"  # as the client sees it (a trusted proxy's X-Forwarded-Proto)
        root = scope.get("root_path") or "/"

        async def watch(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = []
                for name, value in message.get("headers", []):
                    if name.lower() == b"set-cookie" and value.startswith(b"access-token"):
                        cookie_name, _, rest = value.partition(b"=")
                        if https and cookie_name.startswith(b"access-token-unsecure"):
                            continue  # over https only the Secure cookie: never sent over http, to any port
                        status["tokens"].append((cookie_name.decode(), rest.split(b";", 1)[0].decode()))
                        value = _scoped(value, root)
                    headers.append((name, value))
                if status["code"] == 200 and self.device_key is not None:
                    value = known_device.issue(self.device_key, user)
                    headers.append((b"set-cookie", known_device.set_cookie(value, root, https)))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, replay, watch)
        finally:
            code = status.get("code")
            self.throttle.end(ticket, "ok" if code == 200 else "failed" if code == 400 else "other")
        if status.get("code") == 200 and self.sessions is not None:
            for cookie_name, token in status["tokens"]:
                self.sessions.issued(token, user, cookie_name)


SAMESITE = re.compile(rb";\s*samesite=[a-z]+", re.IGNORECASE)
COOKIE_PATH = re.compile(rb";\s*path=[^;]*", re.IGNORECASE)


def get_route_path(scope) -> str:
    """The path below the root path (the server's own routes)."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _scoped(cookie: bytes, path: str) -> bytes:
    """A session cookie with SameSite=Lax and the server's root path as its Path (Gradio sets neither)."""
    cookie = COOKIE_PATH.sub(b"", SAMESITE.sub(b"", cookie))
    return cookie + b"; SameSite=lax; Path=" + path.encode("latin-1", "replace")
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def _login_name(scope, body: bytes) -> tuple[str, str | None]:
    """(user name as the login route will read it, problem) — parsed by Starlette like the route."""
    headers = {k.lower(): v for k, v in scope.get("headers", [])}
    ctype = headers.get(b"content-type", b"").decode("latin-1").split(";", 1)[0].strip().lower()
    if ctype not in FORM_TYPES:
        return "", "login form: expected application/x-www-form-urlencoded or multipart/form-data"
    sent = False

    async def once():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(scope, once).form()
    except Exception:
        return "", "login form: malformed"
    items = form.multi_items()
    await form.close()
    if len({k for k, _ in items}) != len(items):
        return "", "login form: a field is repeated"
    if any(isinstance(v, UploadFile) for _, v in items):
        return "", "login form: files are not accepted"
    user = form.get("username")
    return (user.strip() if isinstance(user, str) else ""), None


async def _answer(send, code: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": code,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class SessionRegistry:
    """Tokens issued by the login route: token -> (user, the password hash it logged in with).

    `cookie_names` are the exact names Gradio gave them (its secure cookie first, as Gradio reads
    them); a token is looked up only under those names."""

    def __init__(self) -> None:
        self._at_login: dict[str, str] = {}  # user -> hash at the last successful login
        self._tokens: dict[str, tuple[str, str]] = {}
        self._revoked: set[str] = set()
        self.cookie_names: list[str] = []
        self._lock = threading.Lock()

    def logged_in(self, user: str, password_hash: str) -> None:
        with self._lock:
            self._at_login[user] = password_hash

    def issued(self, token: str, user: str, cookie_name: str | None = None) -> None:
        """Tie a freshly issued token to the hash its user logged in with."""
        with self._lock:
            if cookie_name and cookie_name not in self.cookie_names:
                self.cookie_names.append(cookie_name)
                self.cookie_names.sort(key=lambda n: "-unsecure-" in n)  # Gradio reads the secure one first
            if user in self._at_login:
                self._tokens[token] = (user, self._at_login[user])

    def token_of(self, cookies: dict) -> str | None:
        """The session token Gradio itself uses for these cookies (same names, same order)."""
        with self._lock:
            names = list(self.cookie_names)
        return next((cookies[n] for n in names if cookies.get(n)), None)

    def owner(self, token: str) -> str | None:
        with self._lock:
            entry = self._tokens.get(token)
        return entry[0] if entry else None

    def valid(self, token: str | None, user: str, current_hash: str | None) -> bool:
        """Only a token this server issued to `user`, whose password has not changed since."""
        if current_hash is None or token is None:
            return False
        with self._lock:
            if token in self._revoked or token not in self._tokens:
                return False
            owner, issued_with = self._tokens[token]
            if owner != user or issued_with != current_hash:
                self._revoked.add(token)  # stays revoked even if the hash is restored
                self._tokens.pop(token, None)
                return False
            return True
