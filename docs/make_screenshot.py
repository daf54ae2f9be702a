"""Regenerate docs/compare.png: two mixed-precision runs on the testbed compared in the web app.

    python docs/make_screenshot.py      (needs chromium and playwright, like the browser test)
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from playwright.sync_api import sync_playwright

    from app.server import serve
    from db.repository.runs import get_run
    from jobs.settings import load_settings
    from jobs.submit import submit

    os.environ["MOEQ_HOME"] = tempfile.mkdtemp()
    settings = load_settings()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo, cleanup = serve(settings, port=port, block=False)
    svc_store = __import__("db.store", fromlist=["Store"]).Store(settings.database_url)
    base = {"model": "testbed-mixtral", "weights": {"bits": 4, "group_size": None}, "techniques": ["gptq"],
            "calibration": {"samples": 32, "seq_len": 256}, "eval": {"tasks": ["testbed"], "limit": 20}}
    ids = [submit(settings, svc_store, {**base, "allocation": {"method": m, "avg_bits": 2.5, "tiers": [2, 3, 4]}})
           for m in ("router_norm", "random")]
    for rid in ids:
        while True:
            with svc_store.session() as s:
                if get_run(s, rid).status in ("succeeded", "failed"):
                    break
            time.sleep(1)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"),
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}")
            page.get_by_role("tab", name="Compare").click()
            page.locator("#compare-ids textarea, #compare-ids input").first.fill(" ".join(i[:8] for i in ids))
            page.locator("#compare-button").click()
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 6", timeout=60_000)
            page.locator("#plot-accuracy").scroll_into_view_if_needed()
            page.screenshot(path=str(ROOT / "docs" / "compare.png"), full_page=True)
            browser.close()
    finally:
        cleanup()


if __name__ == "__main__":
    main()
