"""report.html: self-contained, its parameters listed, rendered in real headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.report.conftest import INPUTS


def test_report_html_is_self_contained_and_lists_its_parameters(written: Path) -> None:
    page = (written / "report.html").read_text()
    images = re.findall(r"<img\b[^>]*>", page, re.IGNORECASE)
    assert len(images) == 2
    for image in images:
        source = re.search(r"\ssrc=(['\"])(.*?)\1", image)
        assert source is not None and source.group(2).startswith("data:image/png;base64,"), image[:80]
    assert re.search(r"https?://", page, re.IGNORECASE) is None
    assert re.search(r"<script\b[^>]*\ssrc\s*=", page, re.IGNORECASE) is None
    assert re.search(r"<link\b|<iframe\b|@import|url\(", page, re.IGNORECASE) is None
    assert "<h2>Load</h2>" not in page and "audit.json" in page  # exact load counts stay in audit.json
    parameters = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", page))
    assert parameters["k"] == "10" and parameters["reference date"] == "2026-11-01"
    assert all(Path(p).name in parameters["inputs"] for p in INPUTS)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("IDENTITY_ANALYTICS_REQUIRE_BROWSER"),
    reason="no Chromium on this machine (make test and CI install Debian's chromium)",
)
def test_report_renders_its_tables_and_charts_in_headless_chromium(written: Path, tmp_path: Path) -> None:
    assert CHROMIUM is not None, "Chromium is required (IDENTITY_ANALYTICS_REQUIRE_BROWSER is set)"
    flags = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
    ]  # fmt: skip
    url = (written / "report.html").as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout
    body = re.search(r"<body[^>]*>", dom)
    assert body is not None
    charts = re.search(r'data-charts-rendered="(\d+)"', body.group(0))
    tables = re.search(r'data-tables="(\d+)"', body.group(0))
    assert charts is not None and int(charts.group(1)) == 2  # every embedded chart decoded
    assert tables is not None and int(tables.group(1)) >= 4  # cohort tables, the breakdown, the segments
    assert dom.count('class="s"') > 0  # suppressed cells marked
    shot = tmp_path / "report.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1200,2000", url], capture_output=True, timeout=120, check=True
    )
    assert shot.stat().st_size > 20_000
