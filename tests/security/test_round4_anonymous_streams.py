"""Round 4, hole 3: `GET /gradio_api/heartbeat/<anything>` answered anonymous clients 200 with an
endless stream (19,900 held from 127.0.10.x; real logins timed out). With logins, only the login page
and its assets are served without a session — the Gradio API answers 401 before Gradio opens a
stream — and a signed-in client holds at most MOEQ_MAX_STREAMS_PER_CLIENT streams at once (429)."""

from __future__ import annotations

import contextlib
import time

import httpx

from tests.security.web import login, team_server

API_PATHS = ["/gradio_api/heartbeat/anything", "/gradio_api/queue/data?session_hash=x", "/gradio_api/info",
             "/config", "/gradio_api/call/launch/abc", "/heartbeat/x", "/queue/data?session_hash=x"]


def test_anonymous_clients_get_401_not_a_stream(tmp_path):
    with team_server(tmp_path) as (base, _, _):
        with httpx.Client(base_url=base, timeout=5) as anon:
            for path in API_PATHS:
                started = time.monotonic()
                r = anon.get(path)
                assert r.status_code == 401 and time.monotonic() - started < 2, (path, r.status_code)
                assert r.json() == {"detail": "sign in first (this server needs a login)"}
            assert anon.get("/").status_code == 200  # the login page itself
        alice = login(base, "alice")
        with alice.stream("GET", "/gradio_api/heartbeat/anything") as r:
            assert r.status_code == 200  # a session streams as before


def test_streams_per_client_are_capped(tmp_path):
    with team_server(tmp_path, MOEQ_MAX_STREAMS_PER_CLIENT="3") as (base, _, _):
        alice = login(base, "alice")
        with contextlib.ExitStack() as held:
            for i in range(3):
                r = held.enter_context(alice.stream("GET", f"/gradio_api/heartbeat/s{i}"))
                assert r.status_code == 200
            r = alice.get("/gradio_api/heartbeat/one-more")
            assert r.status_code == 429, r.status_code
            assert "MOEQ_MAX_STREAMS_PER_CLIENT" in r.json()["detail"]
            assert login(base, "bob").get("/gradio_api/info").status_code == 200  # another user is not affected
        with alice.stream("GET", "/gradio_api/heartbeat/after") as r:  # closed streams are given back
            assert r.status_code == 200
