"""Issue 25, third round, item 6: failing in someone's name locks the failing address out of that
name, never the name for everybody, and brute force from one address is still stopped. (Round 4
replaced the name's slowdown by a budget for unknown browsers: test_round4_login_budget.)"""

from __future__ import annotations

import time

import httpx

from moeq.app.login_guard import NAME_FACTOR, LoginThrottle
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
        assert time.monotonic() - started < 30


def test_a_name_failing_from_many_addresses_is_bounded_but_not_for_its_known_devices():
    now = [0.0]
    t = LoginThrottle(max_failures=3, lock_s=60, clock=lambda: now[0])
    for i in range(3 * NAME_FACTOR - 1):
        t.failed("alice", f"10.0.{i}.1")
    assert t.retry_after("alice", "10.9.9.9") == 0  # a fresh address may still try ...
    t.failed("alice", "10.0.99.1")
    assert t.retry_after("alice", "10.9.9.9") > 0  # ... until the name's budget is spent
    assert t.retry_after("alice", "10.9.9.9", device="alices-browser") == 0  # her own browser is not bounded
    assert t.retry_after("bob", "10.9.9.9") == 0
    for _ in range(3):
        t.failed("bob", "10.1.1.1")
    assert t.retry_after("bob", "10.1.1.1") > 0 and t.retry_after("bob", "10.1.1.2") == 0
    now[0] = 61 + 900
    assert t.retry_after("alice", "10.9.9.9") == 0 and t.retry_after("bob", "10.1.1.1") == 0
