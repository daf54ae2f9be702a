"""Issue 25, third round, item 8: the workbench has no WebSocket route (Gradio 6 streams over
HTTP), and a WebSocket upgrade from another origin or without the secret never gets past the guard."""

from __future__ import annotations

import asyncio

from starlette.routing import Mount, WebSocketRoute

from moeq.app.web_guard import RequestGuard, secret_prefix
from moeq.jobs.settings import load_settings

TOKEN = "t" * 43


def _websocket_routes(routes) -> list[str]:
    found = []
    for route in routes:
        if isinstance(route, WebSocketRoute):
            found.append(route.path)
        elif isinstance(route, Mount):
            found += _websocket_routes(getattr(route.app, "routes", []) or [])
    return found


def test_the_app_has_no_websocket_route(tmp_path):
    from moeq.app.http_app import build_app
    from moeq.app.server import make_services
    from moeq.app.ui import build_ui

    svc = make_services(load_settings({"MOEQ_HOME": str(tmp_path / "home")}))
    try:
        app = build_app(svc, build_ui(svc), "127.0.0.1", 7860, TOKEN)
        assert _websocket_routes(app.routes) == []
    finally:
        svc.store.dispose()


def _upgrade(path: str, headers: dict) -> tuple[bool, list]:
    reached, sent = [], []

    async def inner(scope, receive, send):
        reached.append(scope["path"])

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        sent.append(message)

    guard = RequestGuard(inner, allowed_hosts=("127.0.0.1",), url_token=TOKEN)
    path, _, query = path.partition("?")
    scope = {"type": "websocket", "path": path, "query_string": query.encode(),
             "headers": [(k.encode(), v.encode()) for k, v in {"host": "127.0.0.1:7860", **headers}.items()]}
    asyncio.run(guard(scope, receive, send))
    return bool(reached), sent


def test_a_websocket_upgrade_needs_the_origin_and_the_secret():
    page = f"{secret_prefix(TOKEN)}/gradio_api/queue/data"
    for path, headers in ((page, {"origin": "http://127.0.0.1:8000"}),  # another port: another origin
                          (page, {"origin": "https://evil.example"}),
                          ("/gradio_api/queue/data", {"origin": "http://127.0.0.1:7860"}),  # no secret
                          (f"/gradio_api/queue/data?token={TOKEN}", {}),
                          (page, {"host": "evil.example"})):  # DNS rebinding
        reached, sent = _upgrade(path, headers)
        assert not reached and sent[-1]["type"] == "websocket.close" and sent[-1]["code"] == 1008, (path, headers)
    reached, _ = _upgrade(page, {"origin": "http://127.0.0.1:7860"})
    assert reached  # the page's own origin with the secret path
