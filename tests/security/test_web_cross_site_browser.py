"""Issue 25 item 3 in Chromium: alice is signed in to moeq; a page served from another origin of the
same site (another port on 127.0.0.1) tries, with her cookies, to launch a run in her project and to
read her runs table, the way Gradio's own page does (queue/join, then the event stream). Neither works."""

from __future__ import annotations

import http.server
import json
import shutil
import threading

import pytest

from moeq.db.repository.queries import RunFilter, list_runs
from moeq.db.repository.runs import create_run
from tests.security.conftest import free_port
from tests.security.web import login, team_server

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SECRET = "alice-secret-model-name"
RECIPE = {"model": "testbed-mixtral", "weights": {"bits": 4, "group_size": 32}, "techniques": ["rtn"]}

ATTACK = """<!doctype html><html><body><script>
const target = %(target)s, ids = %(ids)s, recipe = %(recipe)s;
window.__done = false; window.__seen = [];
async function join(name, data, session) {
  const r = await fetch(target + "/gradio_api/queue/join", {method: "POST", credentials: "include",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({data: data, fn_index: ids[name], session_hash: session, event_data: null, trigger_id: null})});
  window.__seen.push(name + " join " + r.status);
}
async function read(session) {
  const r = await fetch(target + "/gradio_api/queue/data?session_hash=" + session, {credentials: "include"});
  const reader = r.body.getReader(); const dec = new TextDecoder(); let text = "";
  const stop = Date.now() + 8000;
  while (Date.now() < stop) {
    const {value, done} = await reader.read(); if (done) break;
    text += dec.decode(value); if (text.includes("close_stream")) break;
  }
  window.__seen.push("stream " + text);
}
(async () => {
  const s = "attack" + Math.random().toString(36).slice(2);
  for (const step of [
      () => join("load", [], s),
      () => join("on_launch", [JSON.stringify(recipe), "p1", false], s),
      () => join("refresh", ["", "", "", "", "", "", "created", "", "", "", []], s),
      () => read(s),
      () => fetch(target + "/gradio_api/queue/join", {method: "POST", mode: "no-cors", credentials: "include",
          headers: {"Content-Type": "text/plain"}, body: JSON.stringify({data: [JSON.stringify(recipe), "p1", false],
          fn_index: ids["on_launch"], session_hash: s, event_data: null, trigger_id: null})})]) {
    try { await step(); } catch (e) { window.__seen.push("refused: " + e); }
  }
  window.__done = true;
})();
</script></body></html>"""


def _serve_page(html: str) -> tuple[http.server.HTTPServer, int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = html.encode()
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    port = free_port()
    httpd = http.server.HTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, port


def test_a_page_on_another_origin_can_neither_launch_nor_read(tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    with team_server(tmp_path) as (base, settings, store):
        with store.session() as s:
            create_run(s, {"model": SECRET}, summary="W4", techniques="rtn", user="alice", project="p1")
        ids = {d["api_name"]: d["id"] for d in login(base, "carol").get("/config").json()["dependencies"]}
        httpd, port = _serve_page(ATTACK % {"target": json.dumps(base), "ids": json.dumps(ids),
                                            "recipe": json.dumps(RECIPE)})
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page()
                page.goto(base)
                page.locator("input[type=text]").first.fill("alice")
                page.locator("input[type=password]").first.fill("alice-password")
                page.locator("input[type=password]").first.press("Enter")
                page.locator("#launch-button").wait_for(timeout=60_000)  # signed in
                page.goto(f"http://127.0.0.1:{port}/attack.html")
                page.wait_for_function("window.__done === true", timeout=60_000)
                seen = page.evaluate("window.__seen")
                browser.close()
        finally:
            httpd.shutdown()
        with store.session() as s:
            rows, _ = list_runs(s, RunFilter())
    assert len(rows) == 1, f"the other origin launched a run: {seen}"
    assert not any(SECRET in str(x) or "queued run" in str(x) for x in seen), seen
