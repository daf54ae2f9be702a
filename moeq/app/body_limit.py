"""The outermost ASGI layer of `moeq serve`: a request body may not exceed a limit, checked before
any of it is read — a small one for requests without credentials (the login form fits), the
operator's `MOEQ_MAX_BODY_MB` for requests that carry them.

A declared Content-Length over the limit is answered 413 at once. A body without one (chunked) is
read here, counted as it streams, up to the limit and no further, then handed on. So an anonymous
client cannot make the server hold a large body in memory before it is told 401/403.
"""

from __future__ import annotations

import json
import logging

from starlette.concurrency import run_in_threadpool

log = logging.getLogger(__name__)
ANONYMOUS_BYTES = 64 * 1024  # the login form and the page's small JSON calls fit


class BodyLimit:
    def __init__(self, app, limit_bytes: int, has_credentials, anonymous_bytes: int = ANONYMOUS_BYTES) -> None:
        """`has_credentials(scope, headers) -> bool` (may block: it runs in a thread) says whether the
        request carries the server's secret or a live session."""
        self.app, self.limit, self.anonymous = app, limit_bytes, min(anonymous_bytes, limit_bytes)
        self.has_credentials = has_credentials

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        declared = headers.get("content-length")
        if declared is not None and "transfer-encoding" in headers:  # which one the server reads is not ours to
            return await _too_large(send, 400, "a request carries either Content-Length or Transfer-Encoding, not both")
        chunked = declared is None and "transfer-encoding" in headers  # counted while it streams, whatever coding
        if declared is None and not chunked:
            return await self.app(scope, receive, send)
        if declared is not None and not declared.strip().isdigit():
            return await _too_large(send, 400, "Content-Length is not a number")
        size = int(declared) if declared is not None else None
        limit = self.anonymous
        if (size is None or size > limit) and await run_in_threadpool(self.has_credentials, scope, headers):
            limit = self.limit
        if size is not None:
            if size > limit:
                return await _too_large(send, 413, _line(limit, self.limit))
            return await self.app(scope, receive, send)  # the server reads no more than declared
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                return await _too_large(send, 413, _line(limit, self.limit))
        return await self.app(scope, replaying(body, receive), send)


def replaying(body: bytes, receive):
    """An ASGI `receive` that gives `body` (already read) once, then whatever comes next."""
    replayed = False

    async def replay():
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _line(limit: int, full: int) -> str:
    if limit < full:
        return f"request body too large: at most {limit // 1024} KiB without credentials"
    return f"request body too large: at most {full / 2**20:g} MB (MOEQ_MAX_BODY_MB)"


async def _too_large(send, code: int, detail: str) -> None:
    log.info("refused a request body: %s", detail)
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": code,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
