"""Issue 25, third round, item 6: failing in someone's name locks the failing address out of that
name, never the name for everybody; the name itself is only slowed down (bounded), and brute force
from one address is still stopped."""

from __future__ import annotations

import time

import httpx

from moeq.app.login_guard import USER_DELAY_MAX_S, LoginThrottle
from tests.security.web import team_server


def _from(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=60)


def test_an_attacker_cannot_lock_the_real_user_out(tmp_path):
    with team_server(tmp_path, MOEQ_LOGIN_MAX_FAILURES="2") as (base, _, _):
        attacker, owner = _from("127.0.0.2"), _from("127.0.0.1")
        for i in range(3):
            attacker.post(base + "/login", data={"username": "alice", "password": f"guess-{i}"})
        stopped = attacker.post(base + "/login", data={"username": "alice", "password": "alice-password"})
        assert stopped.status_code == 429  # brute force from one address is stopped ...
        started = time.monotonic()
        r = owner.post(base + "/login", data={"username": "alice", "password": "alice-password"})
        assert r.status_code == 200, r.text  # ... and the real user still gets in
        assert time.monotonic() - started < USER_DELAY_MAX_S + 30


def test_a_name_failing_from_many_addresses_is_slowed_never_locked():
    now = [0.0]
    t = LoginThrottle(max_failures=3, lock_s=60, clock=lambda: now[0])
    for i in range(50):
        t.failed("alice", f"10.0.{i}.1")
    assert t.retry_after("alice", "10.9.9.9") == 0  # a fresh address may still try ...
    assert 0 < t.delay("alice") <= USER_DELAY_MAX_S  # ... after a bounded wait
    assert t.delay("bob") == 0
    for _ in range(3):
        t.failed("bob", "10.1.1.1")
    assert t.retry_after("bob", "10.1.1.1") > 0 and t.retry_after("bob", "10.1.1.2") == 0
    now[0] = 61 + 900
    assert t.delay("alice") == 0 and t.retry_after("bob", "10.1.1.1") == 0
