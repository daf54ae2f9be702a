"""Issue 25, web side, on one real team-mode server: no upload endpoint (items 1, 8), no
cross-origin or cross-site requests and a CORS allow-list (item 3), session cookies SameSite=Lax and
HttpOnly (item 3), exports private to their owner and removed (item 9), and who may cancel a run."""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from pathlib import Path

import pytest

from moeq.db.repository.runs import create_run
from tests.security.web import call, login, team_server

MARKER = f"export-marker-{uuid.uuid4().hex}"  # unique: Gradio's temp folder is shared by every test run
PORTAL = "https://portal.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {"MOEQ_ALLOWED_HOSTS": "127.0.0.1,localhost,moeq.internal", "MOEQ_ALLOWED_ORIGINS": PORTAL}
    with team_server(tmp_path_factory.mktemp("web"), **env) as (base, settings, store):
        with store.session() as s:
            run = create_run(s, {"model": MARKER}, summary="=HYPERLINK(\"http://x\")", techniques="rtn",
                             user="alice", project="p1")
            run.status = "succeeded"
            rid = run.id
        yield base, settings, store, rid


def test_no_upload_endpoint(server):
    base, *_ = server
    alice = login(base, "alice")
    for path in ("/gradio_api/upload", "/gradio_api/upload?upload_id=x"):
        r = alice.post(path, files={"files": ("task.yaml", b"task: x\n")})
        assert r.status_code == 404, (path, r.status_code, r.text)
        assert "/tmp" not in r.text


def test_cross_origin_requests_are_refused(server):
    base, *_ = server
    alice = login(base, "alice")
    for origin in ("http://127.0.0.1:1", "http://localhost:1", "https://evil.example", "null"):
        code, out = call(alice, "refresh", ["", "", "", "", "", "", "created", "", "", "", []], {"Origin": origin})
        assert code == 403, (origin, code, out)  # reading the runs table from another origin
        r = alice.post("/login", data={"username": "alice", "password": "alice-password"}, headers={"Origin": origin})
        assert r.status_code == 403, origin  # login CSRF
    r = alice.post("/gradio_api/queue/join", json={}, headers={"Sec-Fetch-Site": "same-site"})
    assert r.status_code == 403  # a browser said it is cross-site even without an Origin
    embedded = {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}
    assert alice.get("/logout", headers=embedded).status_code == 403  # <img src=…/logout> on another page
    followed = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    assert alice.get("/", headers=followed).status_code == 200  # a link from elsewhere still opens the page
    code, out = call(alice, "refresh", ["", "", "", "", "", "", "created", "", "", "", []], {"Origin": base})
    assert code == 200 and "1 of 1 runs" in str(out)  # the page's own origin works


def test_cors_answers_only_the_allow_list(server):
    base, *_ = server
    client = login(base, "alice")
    for host in ("moeq.internal", base.split("//")[1]):
        headers = {"Host": host, "Origin": "https://evil.example"}
        for r in (client.get("/config", headers=headers),
                  client.options("/gradio_api/queue/join", headers={**headers, "Access-Control-Request-Method": "POST"})):
            assert "access-control-allow-origin" not in r.headers, (host, r.status_code, r.headers)
    r = client.get("/config", headers={"Host": "moeq.internal", "Origin": PORTAL})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == PORTAL
    r = client.get("/config", headers={"Host": "rebound.example", "Origin": "http://rebound.example"})
    assert r.status_code == 421  # DNS rebinding: a name the server does not answer to


def test_session_cookies_are_samesite_lax_and_httponly(server):
    base, *_ = server
    client = login(base, "bob")
    r = client.post("/login", data={"username": "bob", "password": "bob-password"})
    cookies = r.headers.get_list("set-cookie")
    assert cookies
    for cookie in cookies:
        attrs = {a.strip().split("=")[0].lower(): a.strip().partition("=")[2].lower() for a in cookie.split(";")}
        assert "httponly" in attrs and attrs.get("samesite") in ("lax", "strict"), cookie


def _export_url(out) -> str:
    value = out[0] if isinstance(out, list) else out
    if isinstance(value, dict):  # a file component's value (Gradio's shared cache)
        return value["url"]
    return re.search(r'href="([^"]+)"', value).group(1)


def test_exports_are_private_one_time_and_not_in_gradios_cache(server):
    base, *_ = server
    alice, carol, bob = login(base, "alice"), login(base, "carol"), login(base, "bob")
    code, out = call(alice, "do_export", ["csv", "", "", "", "", "", "", "created"])
    assert code == 200, out
    url = _export_url(out)
    gradio_tmp = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")
    copies = [p for p in gradio_tmp.rglob("*") if p.is_file() and p.stat().st_size < 10**6
              and MARKER.encode() in p.read_bytes()] if gradio_tmp.is_dir() else []
    assert copies == []  # nothing in Gradio's shared, world-readable temporary folder
    for other in (bob, carol, login(base, "root")):  # another project, another member, even an admin
        assert other.get(url).status_code in (403, 404)
    anonymous = type(alice)(base_url=base)
    assert anonymous.get(url).status_code in (401, 403, 404)
    r = alice.get(url)
    assert r.status_code == 200 and MARKER in r.text
    assert "'=HYPERLINK" in r.text  # the formula is text
    assert alice.get(url).status_code == 404  # once


def test_only_the_author_or_an_admin_cancels(server):
    from moeq.app.services import AppServices
    from moeq.contract.errors import MoeqError

    base, settings, store, rid = server
    svc = AppServices(settings=settings, store=store)
    with pytest.raises(MoeqError, match="may cancel"):
        svc.cancel_message("carol", rid)  # same project, not hers
    assert "finished" in svc.cancel_message("alice", rid)
    assert "finished" in svc.cancel_message("root", rid)
