"""The compare report in a real browser: headless Chromium loads the file offline, no console
errors, every chart drawn (plotly's SVG nodes), no network request, a screenshot saved."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from planner import cli
from planner.report.render import render_compare

from .browser import Browser, find_chromium

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.yaml"


def test_compare_report_renders_in_chromium(tmp_path: Path) -> None:
    exe = find_chromium()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does it): "
                    "the report's browser test cannot run here")
    pytest.importorskip("websocket", reason="websocket-client (the test extra) is needed to "
                        "drive Chromium over the DevTools protocol")
    out = tmp_path / "report" / "quickstart.html"
    rc = cli.main(["compare", str(SCENARIO), "--methods", "greedy,round_robin,heatmap,cpsat",
                   "--time-limit", "2", "--out", str(out), "--no-progress"])
    assert rc == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert render_compare(data) == out.read_text()
    browser = Browser(exe)
    try:
        browser.load(out.resolve().as_uri())
        n_charts = browser.evaluate("document.querySelectorAll('div.chart').length")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # plotly draws synchronously, but be patient
            drawn = browser.evaluate(
                "Array.from(document.querySelectorAll('div.chart'))"
                ".filter(d => d.querySelector('svg.main-svg')).length")
            if drawn == n_charts:
                break
            time.sleep(0.2)
        shot = browser.screenshot(tmp_path / "quickstart.png")
        errors = browser.console_errors()
        svgs = browser.evaluate("document.querySelectorAll('svg.main-svg').length")
        traces = browser.evaluate("document.querySelectorAll('g.trace').length")
        requests = browser.requests()
    finally:
        browser.close()
    assert errors == []
    assert n_charts >= 5 and drawn == n_charts, (n_charts, drawn)
    assert svgs >= n_charts and traces > 0
    assert all(u.startswith(("file:", "data:", "about:")) for u in requests), requests
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
