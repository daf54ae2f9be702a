"""Issue 25 items 5 and 6 on a real team-mode server: the lockout throttles the very name the login
route logs in (repeated fields refused, urlencoded or multipart), the client address is the socket's
(X-Forwarded-For is ignored unless the operator names a trusted proxy), and a session token counts
only under Gradio's exact cookie names and only if this server issued it to that user since the
last password change."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest

from moeq.app.login_guard import SessionRegistry
from moeq.app.services import AppServices
from moeq.db.repository.users import AuthError, ensure_user
from tests.security.web import call, login, team_server

URLENCODED = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with team_server(tmp_path_factory.mktemp("login"), MOEQ_LOGIN_MAX_FAILURES="3") as srv:
        yield srv


def _post(base: str, body: bytes, headers: dict = URLENCODED) -> httpx.Response:
    return httpx.post(base + "/login", content=body, headers=headers, timeout=60)


def test_a_decoy_name_neither_escapes_the_lock_nor_logs_in(server):
    base, *_ = server
    for i in range(3):  # failures sent with a decoy first never count on the decoy only
        r = _post(base, f"username=decoy{i}&username=carol&password=guess-{i}".encode())
        assert r.status_code != 200
    for i in range(3):
        assert _post(base, f"username=carol&password=guess-{i}".encode()).status_code in (400, 429)
    assert _post(base, b"username=carol&password=carol-password").status_code == 429  # locked
    r = _post(base, b"username=decoy&username=carol&password=carol-password")
    assert r.status_code in (400, 429), r.text  # the lock holds whatever name comes first
    multipart = httpx.Client(base_url=base, timeout=60).post(
        "/login", files=[("username", (None, "decoy")), ("username", (None, "carol")),
                         ("password", (None, "carol-password"))])
    assert multipart.status_code in (400, 429), multipart.text


def test_repeated_fields_and_other_encodings_are_refused(server):
    base, *_ = server
    r = _post(base, b"username=decoy&username=alice&password=alice-password")
    assert r.status_code == 400 and "repeated" in r.text
    r = _post(base, b'{"username": "alice", "password": "alice-password"}', {"content-type": "application/json"})
    assert r.status_code == 400
    assert _post(base, b"username=alice&password=alice-password").status_code == 200  # the plain form works
    r = httpx.post(base + "/login", files={"username": (None, "alice"), "password": (None, "alice-password")})
    assert r.status_code == 200  # Gradio's own login page posts multipart/form-data


def test_an_old_token_stays_revoked_behind_a_decoy_cookie(server):
    base, settings, store = server
    first = login(base, "bob")
    names = [c.name for c in first.cookies.jar]
    stolen = {n: first.cookies[n] for n in names}
    with store.session() as s:
        ensure_user(s, "bob", "bob-new-password")  # password reset
    login(base, "bob", "bob-new-password")  # the victim signs in again
    thief = httpx.Client(base_url=base, timeout=60)
    cookie = "; ".join(["access-token-0decoy=whatever", "access-token=x"] + [f"{n}={v}" for n, v in stolen.items()])
    for _ in range(2):  # and it stays ended
        code, out = call(thief, "load", [], {"cookie": cookie})
        assert code != 200 and "**user:** bob" not in str(out), out
        print(out)


def test_unknown_tokens_and_other_cookie_names_are_refused(server):
    base, settings, store = server
    registry = SessionRegistry()
    registry.logged_in("alice", "hash-1")
    assert not registry.valid("never-issued", "alice", "hash-1")  # not tied to the user's latest login
    svc = AppServices(settings=settings, store=store, sessions=SessionRegistry())
    assert svc.authenticate("alice", "alice-password")
    svc.sessions.issued("tok-1", "alice", "access-token-abc")
    svc.sessions.issued("tok-1", "alice", "access-token-unsecure-abc")
    assert svc.user_of(SimpleNamespace(username="alice", cookies={"access-token-abc": "tok-1"})) == "alice"
    for cookies in ({"access-token-abc": "never-issued"}, {"access-token-abcd": "tok-1"}, {},
                    {"access-token-0": "never-issued", "access-token-abc": "never-issued"}):
        with pytest.raises(AuthError):
            svc.user_of(SimpleNamespace(username="alice", cookies=cookies))
    with pytest.raises(AuthError):  # a token issued to alice is not carol's
        svc.user_of(SimpleNamespace(username="carol", cookies={"access-token-abc": "tok-1"}))


def test_forwarded_for_does_not_pick_the_address(tmp_path):
    with team_server(tmp_path, MOEQ_LOGIN_MAX_FAILURES="2") as (base, _, _):
        for i in range(4 * 2):  # one address, many names, each with a made-up X-Forwarded-For
            r = httpx.post(base + "/login", data={"username": f"nobody-{i}", "password": "x"},
                           headers={"X-Forwarded-For": f"10.0.{i}.1"}, timeout=60)
            assert r.status_code == 400
        r = httpx.post(base + "/login", data={"username": "alice", "password": "alice-password"},
                       headers={"X-Forwarded-For": "10.9.9.9"}, timeout=60)
        assert r.status_code == 429  # the socket's address (127.0.0.1) is locked
