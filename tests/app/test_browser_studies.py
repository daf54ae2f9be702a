"""Browser (Chromium) checks of studies and paired comparisons: the sweep form shows the grid and its
estimate and launches a study (run by the embedded worker); the study page shows "n of N", the grid as
mean ± sd over seeds, the accuracy-vs-bits chart with error bars and the best recipe at ≤ B bits; the
Compare page shows paired intervals of two seed repeats. Screenshots as in test_browser_workbench."""

from __future__ import annotations

import json
import time

import pytest

from tests.app.test_browser import CHROMIUM, entry, server  # noqa: F401  (the fixture)
from tests.app.test_browser_workbench import _shot

pytestmark = pytest.mark.browser
BASE = {"model": "tiny-mixtral", "techniques": ["rtn"],
        "calibration": {"source": "random", "samples": 4, "seq_len": 32},
        "eval": {"source": "random", "tasks": [], "ppl_windows": 4, "seq_len": 32}}


def _fill_code(page, elem: str, text: str) -> None:
    editor = page.locator(f"#{elem} .cm-content")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(text)


def _fill(page, elem: str, text: str) -> None:
    page.locator(f"#{elem} input, #{elem} textarea").first.fill(text)


def test_sweep_form_study_page_and_paired_compare(server):  # noqa: F811
    from playwright.sync_api import sync_playwright

    from sqlalchemy import select

    from moeq.db.models import Study
    from moeq.db.repository.runs import TERMINAL
    from moeq.db.repository.studies import study_runs
    from moeq.db.store import Store
    from moeq.jobs.settings import load_settings

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                                                     "--no-first-run", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(entry(server))
        page.get_by_role("tab", name="Studies").click()
        page.locator("#sweep-launch").wait_for(timeout=60_000)
        _fill_code(page, "sweep-base", json.dumps(BASE))
        _fill(page, "sweep-axes", "bits=W4A16g16,W2A16g16")
        _fill(page, "sweep-seeds", "0,1")
        _fill(page, "sweep-name", "browser study")
        page.locator("#sweep-plan").click()
        page.wait_for_function("document.querySelector('#sweep-plan-out').innerText.includes('4 runs')",
                               timeout=30_000)
        assert "estimated cost" in page.locator("#sweep-plan-out").inner_text()
        page.locator("#sweep-launch").click()
        page.wait_for_function("document.querySelector('#study-message').innerText.includes('finished')",
                               timeout=60_000)
        sid = page.locator("#study-id input, #study-id textarea").first.input_value()
        store = Store(load_settings().database_url)
        deadline = time.monotonic() + 300
        while True:  # the embedded worker runs the study; the page is asked once it is done
            with store.session() as s:
                full = s.scalar(select(Study.id).where(Study.id.like(f"{sid}%")))
                runs = [(r.id, r.status, json.loads(r.study_point)) for r in study_runs(s, full)]
            if len(runs) == 4 and all(st in TERMINAL for _, st, _ in runs):
                break
            assert time.monotonic() < deadline, runs
            time.sleep(2.0)
        store.dispose()
        page.locator("#study-show").click()
        page.wait_for_function("document.querySelector('#study-message').innerText.includes('4 of 4 finished')",
                               timeout=60_000)
        grid = page.locator("#study-grid").inner_text()
        assert "bits=W4A16g16" in grid and "bits=W2A16g16" in grid and "± " in grid and "(n=2)" in grid
        page.wait_for_function("document.querySelector('#study-pareto-kl .js-plotly-plot') !== null", timeout=30_000)
        fig = json.loads(page.evaluate("(() => { const g = document.querySelector('#study-pareto-kl .js-plotly-plot');"
                                       " return JSON.stringify({data: g.data}); })()"))
        points = fig["data"][0]
        assert len(points["x"]) == 2 and len(points["error_y"]["array"]) == 2  # two grid points, sd error bars
        _fill(page, "study-max-bits", "4")
        page.locator("#study-show").click()
        page.wait_for_function("document.querySelector('#study-best').innerText.includes('best at ≤ 4 bits')",
                               timeout=30_000)
        page.locator("#study-refresh").click()
        page.wait_for_function(f"document.querySelector('#study-list-box').innerText.includes('{sid[:8]}')",
                               timeout=30_000)
        _shot(page, "studies")

        w4 = [rid for rid, _, point in runs if point["bits"] == "W4A16g16"]
        w2 = [rid for rid, _, point in runs if point["bits"] == "W2A16g16"]
        page.get_by_role("tab", name="Compare").click()
        box = page.locator("#compare-ids input, #compare-ids textarea").first
        box.fill(" ".join([w4[0][:8], w4[1][:8], w2[0][:8]]))
        page.locator("#compare-button").click()
        page.locator("#compare-paired").wait_for(timeout=60_000)
        paired = page.locator("#compare-paired").inner_text()
        assert "Δ perplexity" in paired and "Δ KL(FP||Q)" in paired and "[" in paired
        assert "real" in paired  # W2 against W4 on the same windows
        assert "repeats of one recipe over seeds" in page.locator("#compare-paired-box").inner_text()
        _shot(page, "compare-paired")
        browser.close()
