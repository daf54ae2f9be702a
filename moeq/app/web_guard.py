"""The first thing every HTTP or WebSocket request to `moeq serve` meets (outermost ASGI middleware).

- **Host**: only the names in `allowed_hosts` (DNS rebinding: a page on evil.example resolving to
  127.0.0.1 reaches the server under the Host evil.example and is refused).
- **Origin**: a request that carries an Origin must come from the page's own origin (scheme + Host)
  or one the operator allowed; a request the browser marks cross-site or same-site
  (`Sec-Fetch-Site`: an <img>, <script> or form from another page) is refused unless it is a
  top-level navigation (a followed link). Other ports of the same host are other origins.
  Non-browser clients (no Origin, no Sec-Fetch-*) are not affected.
- **Uploads**: no component of the workbench takes files, so Gradio's upload routes answer 404.
- **URL token** (no logins): every request needs the server's secret, given once as `?token=` (it
  then becomes an HttpOnly SameSite=Strict cookie for this port) or as `Authorization: token …`.
"""

from __future__ import annotations

import hmac
import json
import logging
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode, urlsplit

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
                 url_token: str | None = None, token_cookie: str = "moeq-token") -> None:
        self.app = app
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        self.url_token, self.token_cookie = url_token, token_cookie

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        method = scope.get("method", "GET") if scope["type"] == "http" else "WEBSOCKET"
        refusal = self.refusal(scope, headers, method)
        if refusal is None and self.url_token is not None:
            given = _query_token(scope)
            if given is not None and method == "GET" and _same(given, self.url_token):
                return await _redirect_setting_cookie(scope, send, self.token_cookie, self.url_token)
            if not self._has_token(headers):
                refusal = (403, "this moeq server needs the token printed when it started "
                                "(also in $MOEQ_HOME/serve-token): open the URL with ?token=…")
        if refusal is not None:
            code, detail = refusal
            log.info("refused %s %s: %s", method, scope.get("path"), detail)
            return await _refuse(scope, receive, send, code, detail)
        return await self.app(scope, receive, send)

    def refusal(self, scope, headers: dict, method: str) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if self.allowed_hosts and host_name(host) not in self.allowed_hosts:
            return 421, "unexpected Host header (set MOEQ_ALLOWED_HOSTS to the name clients use)"
        origin = headers.get("origin")
        if origin is not None:
            if origin.rstrip("/").lower() not in self._origins(scope, host):
                return 403, "cross-origin request refused (set MOEQ_ALLOWED_ORIGINS to allow an origin)"
        if headers.get("sec-fetch-site") in ("cross-site", "same-site") and not _navigation(method, headers):
            return 403, "cross-site request refused"
        path = scope.get("path", "")
        if scope["type"] == "http" and path.rstrip("/") in UPLOAD_PATHS:
            return 404, "uploads are disabled on this server"
        return None

    def _origins(self, scope, host: str) -> frozenset[str]:
        """The page's own origin: its Host under either scheme (a TLS proxy in front changes the scheme
        the server sees, not the name), and the operator's allow-list."""
        return self.allowed_origins | {f"http://{host}".lower(), f"https://{host}".lower()}

    def _has_token(self, headers: dict) -> bool:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("token ") and _same(auth[6:].strip(), self.url_token):
            return True
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is simply no token
            return False
        morsel = cookie.get(self.token_cookie)
        return morsel is not None and _same(morsel.value, self.url_token)


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


async def _redirect_setting_cookie(scope, send, name: str, token: str) -> None:
    """`GET /path?token=T&x=1` -> 303 to `/path?x=1`, setting the token cookie (the URL then carries no secret)."""
    rest = [(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            if k != "token"]
    target = (scope.get("root_path", "") + scope.get("path", "/")) + (f"?{urlencode(rest)}" if rest else "")
    cookie = f"{name}={token}; Path=/; HttpOnly; SameSite=Strict"
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", target.encode("latin-1", "replace")), (b"set-cookie", cookie.encode()),
                            (b"content-length", b"0"), (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": b""})


async def _refuse(scope, receive, send, code: int, detail: str) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
        return
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": code,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
