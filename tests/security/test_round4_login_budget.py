"""Round 4, holes 4 and 5: the login throttle reserves an attempt before the password is checked, so
40 parallel guesses from one address get exactly `max_failures` checks (the red team got 14 of 5);
a name has a real budget over all addresses together (40 addresses × 4 guesses found a password);
and a browser that signed in as a user before (the known-device cookie) is exempt from the address
lock, the name's budget and the (name, address) lock — spraying made-up names from the shared
127.0.0.1 no longer locks bob and alice out."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from moeq.app.known_device import COOKIE
from moeq.app.login_guard import ADDRESS_FACTOR, NAME_FACTOR
from tests.security.web import team_server


def _from(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=120)


def _try(client: httpx.Client, base: str, user: str, password: str) -> int:
    return client.post(base + "/login", data={"username": user, "password": password}).status_code


def test_a_parallel_burst_gets_exactly_max_failures_checks(tmp_path):
    with team_server(tmp_path, MOEQ_LOGIN_MAX_FAILURES="3") as (base, _, _):
        clients = [_from("127.0.0.1") for _ in range(24)]
        with ThreadPoolExecutor(24) as pool:
            codes = list(pool.map(lambda ic: _try(ic[1], base, "alice", f"guess-{ic[0]}"), enumerate(clients)))
    assert codes.count(400) == 3 and codes.count(429) == 21, codes


def test_many_addresses_cannot_exceed_the_names_budget(tmp_path):
    with team_server(tmp_path, MOEQ_LOGIN_MAX_FAILURES="1") as (base, _, _):
        home = _from("127.0.0.1")
        assert _try(home, base, "alice", "alice-password") == 200 and COOKIE in home.cookies
        codes = [_try(_from(f"127.0.1.{i}"), base, "alice", f"guess-{i}") for i in range(1, NAME_FACTOR + 5)]
        assert codes.count(400) == NAME_FACTOR and codes.count(429) == 4, codes  # 1 × NAME_FACTOR checks
        assert _try(_from("127.0.2.1"), base, "alice", "alice-password") == 429  # even the right one, unknown
        assert _try(home, base, "alice", "alice-password") == 200  # her own browser gets in


def test_spraying_names_from_the_shared_address_does_not_lock_out_a_known_browser(tmp_path):
    with team_server(tmp_path, MOEQ_LOGIN_MAX_FAILURES="2") as (base, _, _):
        bob = _from("127.0.0.1")
        assert _try(bob, base, "bob", "bob-password") == 200
        attacker = _from("127.0.0.1")
        codes = [_try(attacker, base, f"made-up-{i}", "x") for i in range(2 * ADDRESS_FACTOR + 2)]
        assert codes[-1] == 429  # the address is locked for new browsers ...
        assert _try(_from("127.0.0.1"), base, "bob", "bob-password") == 429
        assert _try(bob, base, "bob", "bob-password") == 200  # ... not for bob's own
        for i in range(3):  # failing in bob's name from the same address does not lock his browser either
            _try(attacker, base, "bob", f"guess-{i}")
        assert _try(bob, base, "bob", "bob-password") == 200
        stolen = _from("127.0.0.1")  # a device cookie is for its own name only
        stolen.cookies.set(COOKIE, bob.cookies[COOKIE])
        assert _try(stolen, base, "alice", "alice-password") == 429
        forged = _from("127.0.0.1")  # and only as signed by this server
        forged.cookies.set(COOKIE, "Ym9i.1700000000." + "0" * 32)
        assert _try(forged, base, "bob", "bob-password") == 429

