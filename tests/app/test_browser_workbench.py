"""Browser (Chromium) checks of the workbench flows: tick two runs in the runs table → the compare
page shows both, with every run's heatmap on ONE colour scale (read from the Plotly figure JSON);
"Re-run with edits" fills the Launch form from the recipe; a screenshot of every tab at 1440×900
(written to docs/screenshots/ with MOEQ_UPDATE_DOCS=1, else to test-artifacts/)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.app.test_browser import ARTIFACTS, CHROMIUM, entry, server  # noqa: F401  (the fixture)

pytestmark = pytest.mark.browser
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SHOTS = DOCS if os.environ.get("MOEQ_UPDATE_DOCS") == "1" else ARTIFACTS
SMALL = {"calibration": {"samples": 16, "seq_len": 128},
         "eval": {"tasks": ["testbed"], "limit": 8, "ppl_windows": 4, "seq_len": 128}, "seed": 0}
RECIPES = [{"model": "testbed-mixtral", "weights": {"bits": 4, "group_size": 32}, "techniques": ["rtn"], **SMALL},
           {"model": "testbed-mixtral", "weights": {"bits": 3, "group_size": 32},
            "allocation": {"method": "router_norm", "avg_bits": 3.0, "tiers": [2, 4]}, "techniques": ["rtn"],
            **SMALL}]


def _seed_runs() -> list[str]:
    """Two finished runs in the server's database (run in this process: the page is what is tested)."""
    from moeq.jobs.settings import load_settings
    from moeq.jobs.submit import create_and_execute

    settings = load_settings()
    ids = []
    for recipe in RECIPES:
        result = create_and_execute(settings, recipe)
        assert result["status"] == "succeeded", result.get("error")
        ids.append(result["run_id"])
    return ids


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    time.sleep(0.5)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_select_compare_rerun_and_screenshots(server):  # noqa: F811
    from playwright.sync_api import sync_playwright

    first, second = _seed_runs()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                                                     "--no-first-run", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(entry(server))
        page.locator("#launch-button").wait_for(timeout=60_000)
        page.wait_for_function("document.querySelector('#launch-problem').innerText.includes('valid')",
                               timeout=30_000)
        _shot(page, "launch")

        # runs table → tick two runs → Compare selected
        page.get_by_role("tab", name="Runs").click()
        pick = page.locator("#runs-pick")
        pick.get_by_text(first[:8]).wait_for(timeout=30_000)
        ticks = pick.inner_text()  # each tick names the model, the recipe, all-weights/nominal bits and the seed
        assert "testbed-mixtral" in ticks and "W4A16 g32" in ticks and "(nominal W4)" in ticks and "seed 0" in ticks
        pick.get_by_text(first[:8]).click()
        pick.get_by_text(second[:8]).click()
        box = page.locator("#runs-selected textarea, #runs-selected input").first
        box.fill(first)
        box.press("Enter")
        page.locator("#run-card").wait_for(timeout=30_000)
        assert not page.locator("#runs-cancel").is_visible()  # a finished run cannot be cancelled
        _shot(page, "runs")
        page.locator("#runs-compare-selected").click()
        metrics = page.locator("#compare-metrics")
        metrics.wait_for(timeout=60_000)
        text = metrics.inner_text()
        assert first[:8] in text and second[:8] in text and "(baseline)" in text
        page.wait_for_function("document.querySelector('#plot-heatmap .js-plotly-plot') !== null", timeout=60_000)
        fig = page.evaluate("(() => { const g = document.querySelector('#plot-heatmap .js-plotly-plot');"
                            " return JSON.stringify({data: g.data, layout: g.layout}); })()")
        fig = json.loads(fig)
        heat = [t for t in fig["data"] if t["type"] == "heatmap"]
        assert len(heat) == 2 and all(t.get("coloraxis") == "coloraxis" for t in heat)  # one shared scale
        axis = fig["layout"]["coloraxis"]
        values = [v for t in heat for row in t["z"] for v in row if v is not None]
        assert axis["cmin"] <= min(values) and max(values) <= axis["cmax"]
        assert page.locator("#plot-heatmap-diff .js-plotly-plot").count() == 1
        _shot(page, "compare")

        # re-run fills the form from the recipe
        page.get_by_role("tab", name="Runs").click()
        page.locator("#runs-rerun").click()
        page.wait_for_function("document.querySelector('#launch-recipe .cm-content').innerText.includes('32')",
                               timeout=30_000)
        time.sleep(1.5)  # the form's change events settle

        def value(elem: str) -> str:
            return page.locator(f"#{elem} input, #{elem} textarea").first.input_value()

        recipe = RECIPES[0]
        for accordion in ("calibration", "evaluation"):  # closed accordions keep their inputs out of the DOM
            page.locator(".label-wrap", has_text=accordion).first.click()
        page.locator("#launch-samples input").first.wait_for(timeout=10_000)
        assert value("launch-wbits") == "4" and value("launch-group") == "32"
        assert value("launch-samples") == "16" and value("launch-seqlen") == "128"
        assert value("launch-tasks") == "testbed" and value("launch-limit") == "8" and value("launch-seed") == "0"
        shown = json.loads(page.locator("#launch-recipe .cm-content").inner_text())
        from moeq.contract.recipe import parse_recipe

        assert parse_recipe(shown).to_dict() == parse_recipe(recipe).to_dict()
        assert "from recipe" in page.locator("#launch-problem").inner_text()  # ppl_windows etc. kept
        page.get_by_role("tab", name="Team").click()
        _shot(page, "team")
        page.goto(f"{entry(server)}?run={second}")  # the link in the Launch tab's "queued" message
        page.locator(f"#run-card[data-run='{second}']").wait_for(timeout=60_000)

        # archive the run from its card: it leaves the runs table (and is listed under status "archived")
        page.locator("#runs-archive").click()
        page.wait_for_function("document.querySelector('#runs-message').innerText.includes('archived')",
                               timeout=30_000)
        page.wait_for_function(f"!document.querySelector('#runs-table').innerText.includes('{second[:8]}')",
                               timeout=30_000)
        page.locator("#runs-delete").click()  # not confirmed: nothing is deleted
        page.wait_for_function("document.querySelector('#runs-message').innerText.includes('tick')", timeout=30_000)
        browser.close()
