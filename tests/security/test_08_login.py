"""Item 8: login throttling per user and per address on the real server, constant-time answers for
unknown users, sessions ended by a password change or removal, `moeq users remove`."""

from __future__ import annotations

import statistics
import time
import urllib.parse
import urllib.request
from types import SimpleNamespace

import pytest

from moeq.app.login_guard import LoginThrottle, SessionRegistry
from moeq.app.services import AppServices
from moeq.db.repository.users import AuthError, ensure_user, user_projects
from tests.security.conftest import free_port


def _login(base: str, user: str, password: str) -> int:
    data = urllib.parse.urlencode({"username": user, "password": password}).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(base + "/login", data=data), timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_right_password_is_refused_after_repeated_failures_on_the_real_server(team):
    from moeq.app.server import serve

    from dataclasses import replace

    settings, store = team
    settings = replace(settings, login_max_failures=2)  # MOEQ_LOGIN_MAX_FAILURES=2: fewer slow hashes
    port = free_port()
    demo, cleanup = serve(settings, port=port, worker=False, block=False)
    base = f"http://127.0.0.1:{port}"
    try:
        assert _login(base, "alice", "alice-password") == 200
        codes = [_login(base, "alice", f"guess-{i}") for i in range(settings.login_max_failures)]
        assert set(codes) == {400}
        assert _login(base, "alice", "alice-password") == 429  # locked, even with the right password
        for i in range(4 * settings.login_max_failures):  # one address trying many names gets locked too
            _login(base, f"nobody-{i}", "x")
        assert _login(base, "bob", "bob-password") == 429
    finally:
        cleanup()


def test_throttle_unlocks_after_the_lock_time():
    now = [0.0]
    t = LoginThrottle(max_failures=3, lock_s=60, clock=lambda: now[0])
    for _ in range(3):
        t.failed("alice", "10.0.0.1")
    assert t.retry_after("alice", "10.0.0.1") > 0 and t.retry_after("bob", "10.0.0.1") == 0
    now[0] = 61
    assert t.retry_after("alice", "10.0.0.1") == 0


def test_unknown_users_take_as_long_as_known_ones(team):
    settings, store = team
    svc = AppServices(settings=settings, store=store)
    svc.authenticate("nobody", "warm-up")

    def timed(user: str) -> float:
        t0 = time.perf_counter()
        assert not svc.authenticate(user, "wrong-password")
        return time.perf_counter() - t0

    known = statistics.median(timed("alice") for _ in range(5))
    unknown = statistics.median(timed("no-such-user") for _ in range(5))
    assert unknown > 0.5 * known, (unknown, known)


def _request(user: str, token: str):
    return SimpleNamespace(username=user, cookies={"access-token-abc": token})


def test_password_change_and_removal_end_sessions(team, moeq_cli):
    settings, store = team
    svc = AppServices(settings=settings, store=store, sessions=SessionRegistry())
    assert svc.authenticate("alice", "alice-password")
    svc.sessions.issued("tok-1", "alice", "access-token-abc")
    assert svc.user_of(_request("alice", "tok-1")) == "alice"
    with store.session() as s:
        ensure_user(s, "alice", "a-new-password")  # `moeq users add alice` resets the password
    with pytest.raises(AuthError, match="session has ended"):
        svc.user_of(_request("alice", "tok-1"))
    assert svc.authenticate("alice", "a-new-password")
    svc.sessions.issued("tok-2", "alice", "access-token-abc")
    assert svc.user_of(_request("alice", "tok-2")) == "alice"
    with pytest.raises(AuthError):
        svc.user_of(_request("alice", "tok-1"))  # stays ended

    assert svc.authenticate("bob", "bob-password")
    svc.sessions.issued("tok-b", "bob", "access-token-abc")
    assert svc.user_of(_request("bob", "tok-b")) == "bob"
    env = {"MOEQ_HOME": str(settings.home), "MOEQ_DATABASE_URL": settings.database_url}
    code, _, err = moeq_cli("users", "remove", "bob", env=env)
    assert code == 0, err
    with pytest.raises(AuthError):
        svc.user_of(_request("bob", "tok-b"))
    assert not svc.authenticate("bob", "bob-password")


def test_membership_removal(team, moeq_cli):
    settings, store = team
    env = {"MOEQ_HOME": str(settings.home), "MOEQ_DATABASE_URL": settings.database_url}
    assert moeq_cli("users", "remove", "alice", "--project", "p1", env=env)[0] == 0
    with store.session() as s:
        assert user_projects(s, "alice") == []
    code, _, err = moeq_cli("users", "remove", "alice", "--project", "p1", env=env)
    assert code != 0 and "not a member" in err
