"""Browser (Chromium): Launch queues exactly what the page shows. A form field that cannot be read
(group size `abc`), a recipe admission refuses (group size 100 on a model whose widths it does not
divide) and JSON that does not parse are each shown as "not launchable", and Launch then queues
nothing (the number of runs in the database is unchanged); an edit of the recipe JSON appears in
the form; "✓ recipe is valid" is never on the page while the input is invalid."""

from __future__ import annotations

import json
import time

import pytest

from tests.app.test_browser import open_launch_page, server  # noqa: F401  (the fixture)

pytestmark = pytest.mark.browser


def _run_count() -> int:
    from sqlalchemy import func, select

    from moeq.db.models import Run
    from moeq.db.store import Store
    from moeq.jobs.settings import load_settings

    store = Store(load_settings().database_url)
    try:
        with store.session() as s:
            return s.scalar(select(func.count()).select_from(Run))
    finally:
        store.dispose()


def _problem(page) -> str:
    return page.locator("#launch-problem").inner_text()


def _wait_problem(page, text: str) -> str:
    page.wait_for_function(f"document.querySelector('#launch-problem').innerText.includes({json.dumps(text)})",
                           timeout=30_000)
    return _problem(page)


def _set_group(page, value: str) -> None:
    box = page.locator("#launch-group input").first
    box.click()
    box.fill(value)
    box.press("Enter")
    box.blur()


def _set_json(page, text: str) -> None:
    editor = page.locator("#launch-recipe .cm-content")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(text)


def _launch_refused(page) -> str:
    before = _run_count()
    page.locator("#launch-button").click()
    page.wait_for_function("document.querySelector('#launch-result').innerText.includes('not launched')",
                           timeout=30_000)
    time.sleep(0.5)
    assert _run_count() == before  # nothing queued
    text = page.locator("#launch-result").inner_text()
    assert "queued run" not in text
    return text


def test_a_page_that_says_not_launchable_cannot_launch(server):  # noqa: F811
    from playwright.sync_api import sync_playwright

    from moeq.jobs.local import build_zoo_model
    from moeq.jobs.settings import load_settings

    build_zoo_model(load_settings(), "tiny-mixtral")  # built: admission can check its widths (hidden 64)
    with sync_playwright() as p:
        browser, page = open_launch_page(p, server)
        _wait_problem(page, "valid")

        # a JSON edit appears in the form
        recipe = {"model": "tiny-mixtral", "weights": {"bits": 3, "group_size": 32}, "techniques": ["rtn"],
                  "eval": {"tasks": ["testbed"], "limit": 4}}
        _set_json(page, json.dumps(recipe))
        page.wait_for_function("document.querySelector('#launch-group input').value === '32'", timeout=30_000)
        page.wait_for_function("document.querySelector('#launch-wbits input').value === '3'", timeout=30_000)
        assert page.locator("#launch-model input").first.input_value() == "tiny-mixtral"
        assert "✓ recipe is valid" in _wait_problem(page, "valid")

        # group size `abc`: not launchable, and Launch queues nothing (the JSON still says 32)
        _set_group(page, "abc")
        text = _wait_problem(page, "not launchable")
        assert "group size" in text and "✓" not in text
        assert "group size" in _launch_refused(page)

        # group size 100 parses, but divides no width of tiny-mixtral: admission says so before Launch
        _set_group(page, "100")
        text = _wait_problem(page, "does not divide")
        assert "not launchable" in text and "✓" not in text
        assert "100" in _launch_refused(page)

        # invalid JSON: not launchable, never "valid", nothing queued
        _set_json(page, '{"model": "tiny-mixtral", "weights": {"bits": ')
        text = _wait_problem(page, "not valid JSON")
        assert "✓" not in text
        assert "not valid JSON" in _launch_refused(page)
        browser.close()


def test_a_json_edit_of_fields_in_a_closed_accordion_launches_as_typed(server):  # noqa: F811
    """The JSON edit fills the form, fields in the closed "mixed precision" accordion included; nothing
    rewrites the JSON with a stale form (each filled field's change once ran the form → JSON sync with
    the old tiers, so the page said valid while Launch found form [2, 4] and JSON [2, 3, 4])."""
    from playwright.sync_api import sync_playwright
    from sqlalchemy import select

    from moeq.db.models import Run
    from moeq.db.store import Store
    from moeq.jobs.settings import load_settings

    with sync_playwright() as p:
        browser, page = open_launch_page(p, server)
        _wait_problem(page, "valid")
        shown = json.loads(page.locator("#launch-recipe .cm-content").inner_text())
        shown["weights"]["bits"] = 3
        shown["allocation"] = {"method": "router_norm", "avg_bits": 3.0, "tiers": [2, 4]}
        shown["calibration"]["samples"] = 4
        _set_json(page, json.dumps(shown))
        page.wait_for_function("document.querySelector('#launch-wbits input').value === '3'", timeout=30_000)
        time.sleep(3)  # every change the fill caused has run
        assert json.loads(page.locator("#launch-recipe .cm-content").inner_text())["allocation"]["tiers"] == [2, 4]
        assert "✓ recipe is valid" in _wait_problem(page, "valid")
        page.locator("#launch-button").click()
        page.wait_for_function("document.querySelector('#launch-result').innerText.includes('queued run')",
                               timeout=30_000)
        store = Store(load_settings().database_url)
        try:
            with store.session() as s:
                run = s.scalars(select(Run).order_by(Run.created_at.desc())).first()
                assert run.recipe["allocation"]["tiers"] == [2, 4] and run.recipe["weights"]["bits"] == 3
        finally:
            store.dispose()
        browser.close()
