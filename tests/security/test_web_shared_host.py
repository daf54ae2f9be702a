"""Issue 25 item 4: `moeq serve` without logins on a host shared with other local accounts. Another
account (created here, driven with `runuser`) can neither use the server (no token) nor read the
token, the database or the notes; the server says at start which protection is active; recipes
name files only under the roots the operator set (team mode's defaults otherwise)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path  # noqa: F401

import pytest

from moeq.jobs.settings import load_settings
from tests.security.conftest import ROOT, free_port, subprocess_env, wait_until

OTHER = "moeq-other"
PROBE = r"""
import json, sys, urllib.request
base, home, token_guess = sys.argv[1], sys.argv[2], sys.argv[3]
out = {}
def status(req):
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode("utf-8", "replace")[:2000]
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")[:2000]
    except Exception as e:
        return -1, repr(e)
out["page"] = status(base + "/")
out["guess"] = status(base + "/?token=" + token_guess)
out["guess_path"] = status(base + "/s/" + token_guess + "/")
out["config"] = status(base + "/config")
body = json.dumps({"data": ["", "", "", "", "", "", "created", "", "", "", []]}).encode()
out["read_runs"] = status(urllib.request.Request(base + "/gradio_api/call/refresh", data=body,
                                                 headers={"content-type": "application/json"}))
body = json.dumps({"data": ['{"model": "testbed-mixtral"}', "default", False]}).encode()
out["launch"] = status(urllib.request.Request(base + "/gradio_api/call/on_launch", data=body,
                                              headers={"content-type": "application/json"}))
for name in ("serve-token", "moeq.sqlite"):
    try:
        open(home + "/" + name, "rb").read(1)
        out[name] = "read"
    except OSError as e:
        out[name] = type(e).__name__
print(json.dumps(out))
"""


def _other_account() -> str:
    if os.geteuid() != 0 or shutil.which("runuser") is None or shutil.which("useradd") is None:
        pytest.skip("needs root, runuser and useradd to act as a second local account")
    try:
        pwd.getpwnam(OTHER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER],
                       check=True, capture_output=True)
    return OTHER


def _accepts(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_another_local_account_cannot_use_or_read_an_embedded_server():
    other = _other_account()
    base_dir = Path(tempfile.mkdtemp(prefix="moeq-shared-"))
    base_dir.chmod(0o755)  # a folder everybody may enter, like a home directory often is
    home = base_dir / "home"
    port = free_port()
    env = subprocess_env({"MOEQ_HOME": str(home)})
    server = subprocess.Popen([sys.executable, "-m", "moeq.app.cli", "serve", "--port", str(port), "--no-worker"],
                              env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = wait_until(lambda: server.stdout.readline(), 120, "the start line")
        while "serving" not in first:
            first = server.stdout.readline()
            assert first, "moeq serve ended without a start line"
        token = first.split("/s/")[1].split("/")[0] if "/s/" in first else "none"
        wait_until(lambda: _accepts(port), 120, "the server to accept connections")
        python = shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"
        probe = subprocess.run(["runuser", "-u", other, "--", python, "-c", PROBE, f"http://127.0.0.1:{port}",
                                str(home), "x" * len(token)], capture_output=True, text=True, timeout=180,
                               cwd="/")
        assert probe.returncode == 0, probe.stderr
        import json

        seen = json.loads(probe.stdout)
        for what in ("page", "guess", "guess_path", "config", "read_runs", "launch"):
            assert seen[what][0] in (401, 403), (what, seen[what])
        assert seen["serve-token"] != "read" and seen["moeq.sqlite"] != "read", seen
        assert "protection:" in first and f"/s/{token}/" in first, first  # and it says so at start
        assert (home / "serve-token").stat().st_mode & 0o077 == 0
        assert home.stat().st_mode & 0o077 == 0
        import http.cookiejar
        import urllib.request

        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        with browser.open(f"http://127.0.0.1:{port}/s/{token}/", timeout=60) as r:
            assert r.status == 200  # the owner, with the URL it was given
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(base_dir, ignore_errors=True)


def test_serving_without_logins_uses_team_root_defaults(tmp_path):
    """The owner's own page may not name files outside the roots either (a page is a page: other
    origins and other accounts are kept out, but the roots are the second wall)."""
    import httpx

    from moeq.app.server import serve
    from tests.security.web import page_calls

    secret = tmp_path / "private.txt"
    secret.write_text("the owner's private notes\n" * 100)
    recipe = {"model": "testbed-mixtral", "weights": {"bits": 4, "group_size": 32}, "techniques": ["rtn"],
              "calibration": {"source": f"file:{secret}"}}
    settings = load_settings({"MOEQ_HOME": str(tmp_path / "home")})
    port = free_port()
    demo, cleanup = serve(settings, port=port, worker=False, block=False)
    try:
        token = (settings.home / "serve-token").read_text().strip() if (settings.home / "serve-token").exists() else "none"
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                              headers={"authorization": f"token {token}"})
        import json

        from moeq.app.recipe_fill import form_values, recipe_to_form

        form, kept = recipe_to_form(recipe)  # what the page holds after the JSON is pasted: form + kept keys
        inputs = [json.dumps(recipe), *form_values(form), kept, "default", False, ""]  # JSON, form, project, save, seeds
        _, launched = page_calls(client, [("load", []), ("on_launch", inputs)])
    finally:
        cleanup()
    assert "queued" not in str(launched) and "data root" in str(launched).lower(), launched
