"""Issue 25, third round, item 1: browsers send a host's cookies to every port of it, so a server
without logins must not rest on a cookie: the workbench lives under a per-start secret path, sets
no cookie, sends no Referer, and a cookie captured by another port of 127.0.0.1 opens nothing."""

from __future__ import annotations

import shutil

import httpx
import pytest

from moeq.jobs.settings import ensure_home, load_settings
from tests.security.conftest import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    from moeq.app.server import serve

    settings = ensure_home(load_settings({"MOEQ_HOME": str(tmp_path_factory.mktemp("ports") / "home")}))
    port, lines = free_port(), []
    demo, cleanup = serve(settings, port=port, worker=False, block=False, announce=lines.append)
    try:
        token = (settings.home / "serve-token").read_text().strip()
        yield f"http://127.0.0.1:{port}", port, token, lines
    finally:
        cleanup()


def test_the_page_lives_under_a_secret_path_without_cookies(embedded):
    base, port, token, lines = embedded
    assert any(f"{base}/s/{token}/" in line for line in lines), lines  # the URL printed at start
    client = httpx.Client(base_url=base, timeout=60)
    for path in (f"/s/{token}/", f"/s/{token}/config", "/", "/config", f"/?token={token}"):
        r = client.get(path)
        assert "set-cookie" not in r.headers, (path, r.headers)  # nothing another port could receive
        assert r.headers.get("referrer-policy") == "no-referrer", path
    assert client.get(f"/s/{token}/").status_code == 200
    assert client.get(f"/s/{token}/config").json()["root"].endswith(f"/s/{token}")  # the page asks under it
    for path in ("/", "/config", f"/s/{'x' * len(token)}/", "/s/"):
        assert client.get(path).status_code == 403, path


def test_a_cookie_captured_on_another_port_opens_nothing(embedded):
    base, port, token, _ = embedded
    client = httpx.Client(base_url=base, timeout=60)
    old = client.get(f"/?token={token}")  # the old link form: sent on to the secret path, no cookie
    assert old.status_code == 303 and old.headers["location"] == f"/s/{token}/" and not old.cookies
    for cookie in (f"moeq-token-{port}={token}", f"moeq-token={token}", f"access-token={token}"):
        r = client.get("/config", headers={"cookie": cookie})
        assert r.status_code == 403, cookie
    assert client.get("/config", headers={"authorization": f"token {token}"}).status_code == 200  # scripts


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium")
def test_a_browser_using_the_page_holds_no_cookie(embedded):
    from playwright.sync_api import sync_playwright

    base, _, token, _ = embedded
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{base}/s/{token}/")
        page.locator("#launch-button").wait_for(timeout=60_000)
        cookies = context.cookies()
        browser.close()
    assert cookies == [], cookies


def _session_cookies(response: httpx.Response) -> list[str]:
    return [v for k, v in response.headers.multi_items() if k == "set-cookie" and v.startswith("access-token")]


def test_team_session_cookies_are_scoped_to_the_root_path(tmp_path):
    from tests.security.web import team_server

    with team_server(tmp_path, MOEQ_ROOT_PATH="/moeq") as (base, _, _):
        client = httpx.Client(base_url=base, timeout=60)
        assert client.post("/login", data={"username": "alice", "password": "alice-password"}).status_code == 404
        r = client.post("/moeq/login", data={"username": "alice", "password": "alice-password"})
        assert r.status_code == 200, r.text
        cookies = _session_cookies(r)
        assert cookies and all("Path=/moeq" in c and "SameSite=lax" in c for c in cookies), cookies
        assert client.get("/config").status_code == 404  # nothing outside the root path
        assert client.get("/moeq/config").json()["root"].endswith("/moeq")


def test_over_https_only_the_secure_session_cookie_is_set(tmp_path):
    from tests.security.web import team_server

    with team_server(tmp_path, MOEQ_TRUSTED_PROXIES="127.0.0.1") as (base, _, _):
        r = httpx.post(base + "/login", data={"username": "alice", "password": "alice-password"},
                       headers={"X-Forwarded-Proto": "https"}, timeout=60)
        assert r.status_code == 200, r.text
        cookies = _session_cookies(r)
        assert len(cookies) == 1 and "secure" in cookies[0].lower() and "unsecure" not in cookies[0], cookies
        plain = httpx.post(base + "/login", data={"username": "alice", "password": "alice-password"}, timeout=60)
        assert len(_session_cookies(plain)) == 2  # plain http (a local test setup) keeps Gradio's two
