"""The first thing every HTTP or WebSocket request to `moeq serve` meets (outermost ASGI middleware).

- **Host**: only the names in `allowed_hosts` (DNS rebinding: a page on evil.example resolving to
  127.0.0.1 reaches the server under the Host evil.example and is refused).
- **Origin**: a request that carries an Origin must come from the page's own origin (scheme + Host)
  or one the operator allowed; a request the browser marks cross-site or same-site
  (`Sec-Fetch-Site`: an <img>, <script> or form from another page) is refused unless it is a
  top-level navigation (a followed link). Other ports of the same host are other origins.
  Non-browser clients (no Origin, no Sec-Fetch-*) are not affected.
- **Uploads**: no component of the workbench takes files, so Gradio's upload routes answer 404.
- **Secret path** (no logins): the workbench lives under `/s/<token>/`, a per-start secret; every
  request needs it in its path (the page's own requests all carry it) or as `Authorization: token …`
  (scripts). No cookie carries it: browsers send a host's cookies to every port of that host, so a
  cookie would reach another local user's server on another port of 127.0.0.1, while a path is
  only requested by whoever knows it. An old `/?token=…` link is redirected there (no cookie).
- **Root path** (logins, MOEQ_ROOT_PATH): the workbench lives under that path, so the browser
  scopes the session cookies to it (moeq.app.login_guard also says so with `Path=`).
- **Referrer-Policy: no-referrer** on every answer, so the secret path never leaves in a Referer.
"""

from __future__ import annotations

import hmac
import json
import logging
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger(__name__)
UPLOAD_PATHS = ("/gradio_api/upload", "/gradio_api/upload_progress", "/upload", "/upload_progress")


def host_name(host: str) -> str:
    """'Example.org:7860' -> 'example.org'; '[::1]:7860' -> '::1'."""
    try:
        return (urlsplit(f"//{host}").hostname or "").lower()
    except ValueError:
        return ""


class RequestGuard:
    def __init__(self, app, allowed_hosts: tuple[str, ...] = (), allowed_origins: tuple[str, ...] = (),
                 url_token: str | None = None, root_path: str = "") -> None:
        self.app = app
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        self.url_token = url_token
        self.prefix = secret_prefix(url_token) if url_token is not None else (root_path.rstrip("/") or None)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        method = scope.get("method", "GET") if scope["type"] == "http" else "WEBSOCKET"
        send = _no_referrer(send)
        refusal = self.refusal(scope, headers, method)
        if refusal is None and self.prefix is not None:
            if scope.get("path", "") == self.prefix and scope["type"] == "http":
                return await _redirect(send, self.prefix + "/")
            if scope.get("path", "").startswith(self.prefix + "/"):  # the page and everything it asks for
                scope = {**scope, "root_path": scope.get("root_path", "") + self.prefix}
            elif self.url_token is None:
                refusal = (404, f"not found: this server lives under {self.prefix}/ (MOEQ_ROOT_PATH)")
            elif not has_secret(scope, headers, self.url_token):
                given = _query_token(scope)
                if given is not None and method == "GET" and _same(given, self.url_token):
                    return await _redirect(send, self.prefix + "/")  # an old ?token= link: no cookie
                refusal = (403, "this moeq server needs the URL printed when it started "
                                "(http://HOST:PORT/s/<token>/, token in $MOEQ_HOME/serve-token)")
        if refusal is not None:
            code, detail = refusal
            log.info("refused %s %s: %s", method, _shown_path(scope.get("path", ""), self.prefix), detail)
            return await refuse(scope, receive, send, code, detail)
        return await self.app(scope, receive, send)

    def refusal(self, scope, headers: dict, method: str) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if self.allowed_hosts and host_name(host) not in self.allowed_hosts:
            return 421, "unexpected Host header (set MOEQ_ALLOWED_HOSTS to the name clients use)"
        origin = headers.get("origin")
        if origin is not None:
            if origin.rstrip("/").lower() not in self._origins(scope, host):
                return 403, "cross-origin request refused (set MOEQ_ALLOWED_ORIGINS to allow an origin)"
        path = scope.get("path", "")
        if headers.get("sec-fetch-site") in ("cross-site", "same-site") and (
                not _navigation(method, headers) or path.rstrip("/").endswith(STATE_CHANGING_NAVIGATIONS)):
            return 403, "cross-site request refused"
        if scope["type"] == "http" and path.rstrip("/") in UPLOAD_PATHS:
            return 404, "uploads are disabled on this server"
        return None

    def _origins(self, scope, host: str) -> frozenset[str]:
        """The page's own origin: its Host under either scheme (a TLS proxy in front changes the scheme
        the server sees, not the name), and the operator's allow-list."""
        return self.allowed_origins | {f"http://{host}".lower(), f"https://{host}".lower()}

# GET routes that change state (Gradio's /logout ends every session of the user): a link on another site
# or another port must not reach them, so they take no cross-site navigation either
STATE_CHANGING_NAVIGATIONS = ("/logout",)


def _navigation(method: str, headers: dict) -> bool:
    """A person following a link or typing the address (allowed from anywhere), as opposed to a
    page embedding, fetching or posting to the server (the browser says which: Sec-Fetch-*)."""
    return method in ("GET", "HEAD") and headers.get("sec-fetch-mode") == "navigate" \
        and headers.get("sec-fetch-dest", "document") in ("document", "")


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


def _query_token(scope) -> str | None:
    pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    values = [v for k, v in pairs if k == "token"]
    return values[-1] if values else None


def has_secret(scope, headers: dict, token: str) -> bool:
    """The request carries the server's secret: under its secret path, or as `Authorization: token …`."""
    if scope.get("path", "").startswith(secret_prefix(token) + "/"):
        return True
    auth = headers.get("authorization", "")
    return auth.lower().startswith("token ") and _same(auth[6:].strip(), token)


def secret_prefix(token: str) -> str:
    """The path the workbench is served under when it runs without logins."""
    return f"/s/{token}"


def _shown_path(path: str, prefix: str | None) -> str:
    return path.replace(prefix, "/s/…") if prefix else path  # the secret never goes to the log


def _no_referrer(send):
    async def wrapped(message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"referrer-policy", b"no-referrer")]}
        await send(message)
    return wrapped


async def _redirect(send, target: str) -> None:
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", target.encode("latin-1", "replace")), (b"content-length", b"0"),
                            (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": b""})


async def refuse(scope, receive, send, code: int, detail: str) -> None:
    """Answer `code` with a one-line JSON detail (a WebSocket is closed with 1008 instead)."""
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
        return
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": code,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
