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
