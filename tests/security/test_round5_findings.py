"""Issue 25, fourth attack run (against the merged round-4 fixes): each finding as a test.

1. Password checks ran on the server's event loop (Gradio awaits the auth function in its async /login
   route): anonymous logins from rotating addresses slowed every request of every user.
2. A body declaring Content-Length with Transfer-Encoding: chunked was trusted by its declared size
   while the server read the chunked stream: 40 MiB past MOEQ_MAX_BODY_MB.
3. A page on another site or port navigated a member's browser to /logout, ending all her sessions.
4. Deep JSON/TOML in --grid, --recipe files and the settings file, and a 5,000-digit --seeds, printed
   tracebacks or echoed the whole input; `moeq users add` took names no login accepts (a tab, 300
   characters — a database error traceback).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from fastapi import HTTPException

from moeq.app.body_limit import BodyLimit
from moeq.app.password_checks import threaded_auth
from moeq.app.web_guard import RequestGuard


def _slow_check(username: str, password: str) -> bool:
    time.sleep(0.3)  # an Argon2 check's worth of CPU, held the way a synchronous check holds it
    return password == "right"


def test_password_checks_leave_the_event_loop_free():
    auth = threaded_auth(_slow_check, workers=2, waiting=16)
    assert asyncio.iscoroutinefunction(auth)  # Gradio awaits it instead of calling it in the loop

    async def scenario():
        ticks = []

        async def other_requests():
            for _ in range(20):
                t = time.monotonic()
                await asyncio.sleep(0.01)
                ticks.append(time.monotonic() - t)

        logins = [auth("ghost", "x") for _ in range(4)]
        results = await asyncio.gather(*logins, other_requests(), auth("bob", "right"))
        return results, ticks

    results, ticks = asyncio.run(scenario())
    assert results[:4] == [False] * 4 and results[-1] is True
    assert max(ticks) < 0.2  # on the loop, each 0.3 s check would have stalled the other requests


def test_logins_beyond_the_queue_are_refused_at_once():
    auth = threaded_auth(_slow_check, workers=1, waiting=2)

    async def scenario():
        return await asyncio.gather(*(auth("ghost", "x") for _ in range(6)), return_exceptions=True)

    started = time.monotonic()
    results = asyncio.run(scenario())
    refused = [r for r in results if isinstance(r, HTTPException)]
    assert len(refused) == 3 and all(r.status_code == 429 for r in refused)
    assert time.monotonic() - started < 1.5  # three checks ran, one at a time; three never waited


def test_content_length_with_transfer_encoding_is_refused_unread():
    reached, pulled, sent = [], [], []

    async def inner(scope, receive, send):
        reached.append(scope["path"])

    async def receive():
        pulled.append(1)
        return {"type": "http.request", "body": b"x" * 4096, "more_body": True}

    async def send(message):
        sent.append(message)

    limit = BodyLimit(inner, limit_bytes=2**20, has_credentials=lambda scope, headers: True)
    scope = {"type": "http", "method": "POST", "path": "/gradio_api/queue/join",
             "headers": [(b"content-length", b"10"), (b"transfer-encoding", b"chunked")]}
    asyncio.run(limit(scope, receive, send))
    assert not reached and not pulled and sent[0]["status"] == 400


def test_a_transfer_encoding_other_than_chunked_is_counted_too():
    reached, sent = [], []

    async def inner(scope, receive, send):
        reached.append(1)

    async def receive():
        return {"type": "http.request", "body": b"x" * 4096, "more_body": True}

    async def send(message):
        sent.append(message)

    limit = BodyLimit(inner, limit_bytes=2**20, has_credentials=lambda scope, headers: False, anonymous_bytes=8192)
    scope = {"type": "http", "method": "POST", "path": "/x", "headers": [(b"transfer-encoding", b"gzip, chunked")]}
    asyncio.run(limit(scope, receive, send))
    assert not reached and sent[0]["status"] == 413


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_another_site_cannot_navigate_a_member_to_logout(site):
    guard = RequestGuard(lambda *a: None)
    nav = {"host": "127.0.0.1:7860", "sec-fetch-site": site, "sec-fetch-mode": "navigate", "sec-fetch-dest": "document"}
    assert guard.refusal({"type": "http", "path": "/logout"}, nav, "GET")[0] == 403
    assert guard.refusal({"type": "http", "path": "/moeq/logout/"}, nav, "GET")[0] == 403
    assert guard.refusal({"type": "http", "path": "/"}, nav, "GET") is None  # following a link to the page: fine
    own = {**nav, "sec-fetch-site": "same-origin"}
    assert guard.refusal({"type": "http", "path": "/logout"}, own, "GET") is None  # the page's own logout link


def test_deep_or_huge_cli_input_is_one_short_line(moeq_cli, tmp_path):
    env = {"MOEQ_HOME": str(tmp_path / "home")}
    code, _, err = moeq_cli("sweep", "--model", "tiny-mixtral", "--grid", "bits=" + "[" * 50_000, "--dry-run", env=env)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "nested too deeply" in err and "Traceback" not in err
    code, _, err = moeq_cli("sweep", "--model", "tiny-mixtral", "--grid", "bits=W4A16g16", "--seeds", "9" * 5000,
                            "--dry-run", env=env)
    assert code == 2 and len(err) < 300 and "5000 characters" in err
    deep = tmp_path / "deep.json"
    deep.write_text('{"model": "tiny-mixtral", "x": ' + "[" * 5000 + "]" * 5000 + "}")
    code, _, err = moeq_cli("submit", "--recipe", str(deep), env=env)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "nested too deeply" in err


def test_deep_settings_toml_is_one_line(moeq_cli, tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir(mode=0o700)
    toml = conf / "moeq.toml"
    toml.write_text("[moeq]\nx = " + "[" * 3000 + "]" * 3000 + "\n")
    toml.chmod(0o600)
    code, _, err = moeq_cli("runs", "list", env={"MOEQ_HOME": str(tmp_path / "home"), "MOEQ_CONFIG": str(toml)})
    assert code != 0 and len(err.strip().splitlines()) == 1 and "not valid TOML" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["a\tb", "x" * 300, "new\nline"])
def test_users_add_refuses_names_no_login_accepts(moeq_cli, tmp_path, monkeypatch, name):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password\n"))
    env = {"MOEQ_HOME": str(tmp_path / "home")}
    code, out, err = moeq_cli("users", "add", name, "--project", "pa", "--password-stdin", env=env)
    assert code == 2 and "printable" in err and len(err.strip().splitlines()) == 1 and "saved" not in out
    code, _, err = moeq_cli("users", "add", "carol", "--project", "p\tq", "--password-stdin", env=env)
    assert code == 2 and "project name" in err
