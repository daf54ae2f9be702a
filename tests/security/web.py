"""Helpers for the web attack tests: a real team-mode `moeq serve` (logins) in this process, HTTP
logins, and calls of the page's own event handlers through Gradio's HTTP API."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import httpx

from moeq.db.repository.users import add_member, ensure_user
from moeq.db.store import Store
from moeq.jobs.settings import load_settings
from tests.security.conftest import free_port, team_env


@contextlib.contextmanager
def team_server(tmp: Path, **env):
    """(base URL, settings, store): alice and carol in p1, bob in p2, admin `root`; no worker."""
    from moeq.app.server import serve

    url = f"sqlite:///{tmp / 'web.sqlite'}"
    settings = load_settings(team_env(tmp / "home", url, **env))
    store = Store(url)
    with store.session() as s:
        for name in ("alice", "bob", "carol"):
            ensure_user(s, name, f"{name}-password")
        ensure_user(s, "root", "root-password", admin=True)
        add_member(s, "p1", "alice")
        add_member(s, "p1", "carol")
        add_member(s, "p2", "bob")
    port = free_port()
    demo, cleanup = serve(settings, port=port, worker=False, block=False)
    try:
        yield f"http://127.0.0.1:{port}", settings, store
    finally:
        cleanup()
        store.dispose()


def login(base: str, user: str, password: str | None = None) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=60)
    r = client.post("/login", data={"username": user, "password": password or f"{user}-password"})
    assert r.status_code == 200, (user, r.status_code, r.text)
    return client


def call(client: httpx.Client, api_name: str, data: list, headers: dict | None = None) -> tuple[int, object]:
    """Run the page's handler `api_name` like the page does; (HTTP status, output data or error text)."""
    r = client.post(f"/gradio_api/call/{api_name}", json={"data": data}, headers=headers or {})
    if r.status_code != 200:
        return r.status_code, r.text
    event = r.json()["event_id"]
    r = client.get(f"/gradio_api/call/{api_name}/{event}", headers=headers or {})
    kind, payload = None, None
    for line in r.text.splitlines():
        if line.startswith("event: "):
            kind = line[7:].strip()
        elif line.startswith("data: ") and kind in ("complete", "error"):
            payload = line[6:]
    if kind == "complete":
        return 200, json.loads(payload)
    return 500, payload or r.text


def page_calls(client: httpx.Client, steps: list[tuple[str, list]], headers: dict | None = None) -> list:
    """Run handlers in one page session, in order (a `load` first fills per-session choices, as the
    page does); returns each one's output data (or its error text)."""
    import uuid

    ids = {d["api_name"]: d["id"] for d in client.get("/config", headers=headers or {}).json()["dependencies"]}
    session = uuid.uuid4().hex
    outputs = []
    for name, data in steps:
        r = client.post("/gradio_api/queue/join", headers=headers or {},
                        json={"data": data, "fn_index": ids[name], "session_hash": session, "event_data": None,
                              "trigger_id": None})
        assert r.status_code == 200, r.text
        event = r.json()["event_id"]
        with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session},
                           headers=headers or {}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data: "):
                    continue
                msg = json.loads(line[6:])
                if msg.get("event_id") == event and msg.get("msg") == "process_completed":
                    out = msg.get("output") or {}
                    outputs.append(out.get("data", out.get("error")))
                    break
    return outputs
