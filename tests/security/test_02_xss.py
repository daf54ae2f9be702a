"""Item 2: strings from users and runs (model, stage, error message, recipe) are escaped in every
panel; in Chromium a stored payload must not run (window.__xss stays unset)."""

from __future__ import annotations

import shutil
import time

import pytest

from moeq.app.charts import run_label
from moeq.app.compare_table import compare_html
from moeq.app.tabs.runs import progress_html
from tests.security.conftest import HOSTILE, free_port, page_url

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _hostile_run(run_id: str = "a" * 32) -> dict:
    return {"run_id": run_id, "status": "failed", "progress": 0.5, "stage": HOSTILE, "model": HOSTILE,
            "recipe_summary": HOSTILE, "recipe": {"model": HOSTILE, "eval": {"tasks": [HOSTILE]}},
            "error": {"type": HOSTILE, "message": f"model path {HOSTILE!r} does not exist"}}


def test_every_panel_escapes_hostile_strings():
    runs = [_hostile_run("a" * 32), _hostile_run("b" * 32)]
    for text in (progress_html(runs[0]), compare_html(runs), run_label(runs[0])):
        assert "<img" not in text and "&lt;img" in text


def _store_hostile_runs(settings):
    from moeq.db.repository.runs import create_run, mark_failed, update_progress
    from moeq.db.store import Store

    store = Store(settings.database_url)
    ids = []
    with store.session() as s:
        for _ in range(2):
            run = create_run(s, {"model": HOSTILE}, summary=HOSTILE, techniques="rtn")
            run.status, run.attempts = "running", 1
            s.flush()
            update_progress(s, run.id, 0.3, HOSTILE)
            mark_failed(s, run.id, "ModelError", f"model path {HOSTILE!r} does not exist")
            ids.append(run.id)
    store.dispose()
    return ids


@pytest.mark.browser
def test_stored_payload_does_not_run_in_chromium(tmp_path, monkeypatch):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    from moeq.app.server import serve
    from moeq.jobs.settings import ensure_home, load_settings

    monkeypatch.setenv("MOEQ_HOME", str(tmp_path / "home"))
    for var in ("MOEQ_BROKER_URL", "MOEQ_DATABASE_URL", "MOEQ_AUTH"):
        monkeypatch.delenv(var, raising=False)
    settings = ensure_home(load_settings())
    ids = _store_hostile_runs(settings)
    port = free_port()
    demo, cleanup = serve(settings, port=port, worker=False, block=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            page.goto(page_url(settings, port))
            page.locator("#launch-button").wait_for(timeout=60_000)
            page.get_by_role("tab", name="Runs").click()
            box = page.locator("#runs-selected textarea, #runs-selected input").first
            box.fill(ids[0])
            box.press("Enter")
            page.locator(f"#run-progress[data-run='{ids[0]}']").first.wait_for(timeout=30_000)
            page.get_by_role("tab", name="Compare").click()
            cmp_box = page.locator("#compare-ids textarea, #compare-ids input").first
            cmp_box.fill(" ".join(ids))
            page.locator("#compare-button").click()
            page.locator("#compare-table table").first.wait_for(timeout=30_000)
            time.sleep(2.5)  # a timer refresh of the runs panel and table has happened
            shown = page.locator("#run-progress").first.inner_text()
            xss = page.evaluate("() => window.__xss")
            browser.close()
    finally:
        cleanup()
    assert "onerror" in shown  # the payload is shown as text ...
    assert xss is None  # ... and never ran
