"""Browser end to end (Debian chromium + Playwright): launch two testbed jobs from the page in
embedded mode, watch them finish, compare them, and check the charts and heatmap render.

Needs `apt-get install chromium` (see README); skipped with a clear reason when it is missing."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("MOEQ_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
RECIPE = {"model": "testbed-mixtral", "weights": {"bits": 4, "group_size": 32}, "techniques": ["rtn"],
          "eval": {"tasks": ["testbed"], "limit": 8, "ppl_windows": 4, "seq_len": 128}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(tmp_path, monkeypatch):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    pytest.importorskip("playwright")
    from moeq.app.server import serve
    from moeq.jobs.settings import load_settings

    home = tmp_path / "home"
    env = {"MOEQ_HOME": str(home)}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("MOEQ_BROKER_URL", raising=False)
    monkeypatch.delenv("MOEQ_DATABASE_URL", raising=False)
    port = _free_port()
    demo, cleanup = serve(load_settings(), port=port, block=False)
    yield f"http://127.0.0.1:{port}"
    cleanup()


def open_launch_page(p, server: str):
    """Chromium at 1440×900 on the server's Launch tab, ready: (browser, page)."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                                                 "--no-first-run", "--disable-sync"])
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.goto(entry(server))
    page.locator("#launch-button").wait_for(timeout=60_000)
    return browser, page


def entry(server: str) -> str:
    """The first address the browser opens: the secret path `moeq serve` wrote for this server's owner."""
    token = (Path(os.environ["MOEQ_HOME"]) / "serve-token").read_text().strip()
    return f"{server}/s/{token}/"


def _set_recipe(page, recipe: dict) -> None:
    editor = page.locator("#launch-recipe .cm-content")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(json.dumps(recipe))


def _launch(page, recipe: dict, previous: str | None = None) -> str:
    page.get_by_role("tab", name="Launch").click()
    _set_recipe(page, recipe)
    w = recipe["weights"]  # Launch is refused until the form shows the JSON's recipe: wait for the sync
    page.wait_for_function(f"document.querySelector('#launch-wbits input').value === '{w['bits']}' && "
                           f"document.querySelector('#launch-group input').value === '{w['group_size']}' && "
                           "document.querySelector('#launch-problem').innerText.includes('✓')", timeout=30_000)
    page.locator("#launch-button").click()
    result = page.locator("#launch-result")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"[0-9a-f]{32}", result.inner_text())
        if found and found.group(0) != previous:
            return found.group(0)
        time.sleep(0.2)
    raise AssertionError(f"launch did not report a new run: {result.inner_text()!r}")


def _wait_done(page, run_id: str, timeout_s: float = 240) -> None:
    page.get_by_role("tab", name="Runs").click()
    box = page.locator("#runs-selected textarea, #runs-selected input").first
    box.fill(run_id)
    box.press("Enter")
    deadline = time.monotonic() + timeout_s
    bar = page.locator(f"#run-progress[data-run='{run_id}']").first
    while time.monotonic() < deadline:
        status = bar.get_attribute("data-status", timeout=30_000)
        if status in ("succeeded", "failed", "cancelled"):
            assert status == "succeeded", bar.inner_text()
            return
        time.sleep(1)
    raise AssertionError(f"run {run_id} did not finish in {timeout_s}s")


def test_launch_follow_and_compare_in_the_browser(server):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(entry(server))
        page.locator("#launch-button").wait_for(timeout=60_000)
        assert "mixtral" in page.locator("#launch-model-info").inner_text()
        first = _launch(page, RECIPE)
        second = _launch(page, {**RECIPE, "weights": {"bits": 2, "group_size": 32}}, previous=first)
        _wait_done(page, first)
        _wait_done(page, second)
        page.wait_for_function(  # the run card followed the run to its end (no stale "running")
            "document.querySelector('#run-card').innerText.includes('succeeded')", timeout=30_000)
        assert page.locator("#runs-table").get_by_text(second[:8]).count() >= 1  # short ids in the table
        page.screenshot(path=str(ARTIFACTS / "runs.png"), full_page=True)
        page.get_by_role("tab", name="Compare").click()
        page.locator("#compare-ids textarea, #compare-ids input").first.fill(f"{first[:8]} {second[:8]}")
        page.locator("#compare-button").click()
        page.locator("#compare-table table").first.wait_for(timeout=60_000)
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 6", timeout=60_000)
        z = page.evaluate("document.querySelector('#plot-heatmap .js-plotly-plot').data[0].z")
        assert len(z) == 4 and all(len(row) == 8 for row in z)  # testbed-mixtral: 4 MoE layers × 8 experts
        page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)
        html = page.locator("#compare-table").inner_html()
        assert page.locator("#compare-table tr.diff").count() >= 1, html[:2000]  # weights.bits differs
        browser.close()
