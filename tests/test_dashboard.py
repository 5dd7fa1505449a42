"""`riverbed dashboard`: the page's numbers against hand-computed ones from trace rows written through
the real ClickHouse engine, the charts painted in a real headless Chromium (a screenshot of every
chart must show its series colours), and the command writing the file and serving it on loopback."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sinks.charts import PALETTE
from sinks.clickhouse import TRACE_COLUMNS, ClickHouseClient, connect, migrate, trace_row
from sinks.dashboard import Dashboard, build_dashboard, render_html
from sinks.report import ReportScope
from streams import processes
from streams.config import PROJECT_ROOT, Settings
from tests.conftest import cli, free_port, in_subprocess, wait_until
from tests.test_report import NOW, ROWS, trace

ROUTES = ("local/minilm", "llm/cheap", "llm/big")
TIMELINE = [
    trace(
        f"t{k}",
        "acme" if k % 2 else "globex",
        ROUTES[k % 3],
        1,
        started_at=NOW - timedelta(minutes=4 * k + 1),
        cost_usd=Decimal("0.01") * (k % 3),  # the local route is free
        latency_ms=20.0 + 10 * k,
    )
    for k in range(15)
]
DASH_ROWS = ROWS + TIMELINE


def seed(client: ClickHouseClient) -> None:
    migrate(client)
    client.insert("traces", [trace_row(r, NOW) for r in DASH_ROWS], TRACE_COLUMNS)


def seed_database() -> None:
    """Run in a subprocess: chdb lets one process own a data path, and the test process owns another."""
    settings = Settings()
    client = connect(settings.effective_clickhouse_dsn, settings.clickhouse_database)
    seed(client)
    client.close()


SCOPE = ReportScope(NOW - timedelta(days=1), NOW + timedelta(minutes=1))


def in_scope(tenant: str = "") -> list[dict[str, Any]]:
    return [
        r
        for r in DASH_ROWS
        if SCOPE.start <= r["started_at"] < SCOPE.end and (not tenant or r["tenant_id"] == tenant)
    ]


@pytest.fixture(scope="module")
def dashboard_db(broker: Settings) -> Iterator[ClickHouseClient]:
    client = connect(broker.effective_clickhouse_dsn, "dashboard_test")
    seed(client)
    yield client
    client.close()


@pytest.fixture(scope="module")
def dashboard(dashboard_db: ClickHouseClient) -> Dashboard:
    return build_dashboard(dashboard_db, SCOPE)


def chart_svg(dashboard: Dashboard, key: str) -> str:
    (chart,) = [c for c in dashboard.charts if c.key == key]
    return chart.svg


def bar_tips(svg: str) -> list[str]:
    return re.findall(r'<rect class="bar"[^>]*><title>([^<]*)</title>', svg)


def test_headline_matches_the_rows(dashboard: Dashboard) -> None:
    rows = in_scope()
    head = dashboard.headline
    assert head["calls"] == len(rows)
    assert head["events"] == len({r["event_id"] for r in rows})
    assert head["total_cost_usd"] == sum(r["cost_usd"] or 0 for r in rows)
    assert head["errors"] == sum(r["status"] == "error" for r in rows)
    assert head["reused"] == sum(r["cache_status"] != "miss" for r in rows)


def test_cost_timeline_adds_up_per_model(dashboard: Dashboard) -> None:
    drawn: dict[str, float] = defaultdict(float)
    for tip in bar_tips(chart_svg(dashboard, "cost_over_time")):
        route, amount = tip.split(" · ")[1].split(": ")
        drawn[route] += float(amount.lstrip("$").replace(",", ""))
    expected: dict[str, float] = defaultdict(float)
    for r in in_scope():
        if r["cost_usd"]:
            expected[r["route"]] += float(r["cost_usd"])
    assert drawn.keys() == expected.keys()  # the free local route draws no cost bar
    for route, total in expected.items():
        assert drawn[route] == pytest.approx(total, rel=1e-3)
    calls = bar_tips(chart_svg(dashboard, "calls_over_time"))
    assert sum(int(t.rsplit(": ", 1)[1]) for t in calls) == len(in_scope())


def test_latency_rates_and_errors_charts(dashboard: Dashboard) -> None:
    latency = bar_tips(chart_svg(dashboard, "latency"))
    ok_routes = {r["route"] for r in in_scope() if r["status"] == "ok"}
    assert len(latency) == 3 * len(ok_routes)  # p50, p95, p99 per step·route
    errors = bar_tips(chart_svg(dashboard, "errors"))
    assert errors == ["ProviderTimeout · attempts: 1"]
    rates = bar_tips(chart_svg(dashboard, "rates"))
    hits = sum(r["cache_status"] != "miss" for r in in_scope())
    assert f"summarize · cache hit rate: {hits / len(in_scope()) * 100:.1f}%" in rates
    cost_by_event: dict[str, Decimal] = defaultdict(Decimal)
    for r in in_scope():
        cost_by_event[r["event_id"]] += r["cost_usd"] or 0
    expected_top = sorted((c for c in cost_by_event.values() if c > 0), reverse=True)[:10]
    assert [e["total_cost_usd"] for e in dashboard.top_events] == expected_top


def test_empty_range_says_so(dashboard_db: ClickHouseClient) -> None:
    empty = build_dashboard(dashboard_db, ReportScope(NOW + timedelta(days=1), NOW + timedelta(days=2)))
    assert all(not c.svg and c.note for c in empty.charts)
    html = render_html(empty)
    assert "No model calls in this range." in html and "<svg" not in html


def test_free_calls_say_so_instead_of_an_empty_cost_chart(dashboard_db: ClickHouseClient) -> None:
    local = ReportScope(SCOPE.start, SCOPE.end, "globex")
    view = build_dashboard(dashboard_db, local)
    globex = in_scope("globex")
    assert view.headline["calls"] == len(globex)
    paid = [r for r in globex if r["cost_usd"]]
    cost = next(c for c in view.charts if c.key == "cost_over_time")
    assert bool(cost.svg) == bool(paid)


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.mark.skipif(
    not (BROWSER and DRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
def test_charts_render_in_headless_chromium(dashboard: Dashboard, tmp_path: Path) -> None:
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    page = tmp_path / "dashboard.html"
    page.write_text(render_html(dashboard), encoding="utf-8")
    options = webdriver.ChromeOptions()
    options.binary_location = str(BROWSER)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1500,2600",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    try:
        driver.get(page.as_uri())
        palette = {tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in PALETTE}
        figures = driver.find_elements(By.CSS_SELECTOR, "figure.chart")
        assert [f.get_attribute("data-chart") for f in figures] == [c.key for c in dashboard.charts]
        for figure in figures:
            shot = Image.open(io.BytesIO(figure.screenshot_as_png)).convert("RGB")
            colours = shot.getcolors(maxcolors=1 << 20) or []
            painted = {rgb: n for n, rgb in colours if rgb in palette}
            key = figure.get_attribute("data-chart")
            assert figure.size["width"] > 300 and figure.size["height"] > 120, key
            assert sum(painted.values()) > 300, f"{key}: no series colour painted ({painted})"
            if key in ("latency", "rates"):
                assert len(painted) >= 2, f"{key}: expected several series colours, got {painted}"
        driver.save_screenshot(str(tmp_path / "dashboard.png"))
    finally:
        driver.quit()


def test_command_writes_the_page_and_serves_it(base_settings: Settings, tmp_path: Path) -> None:
    settings = base_settings.model_copy(update={"data_dir": tmp_path / "data"})
    settings.data_dir.mkdir(parents=True)
    in_subprocess(settings, "tests.test_dashboard", "seed_database")

    written = cli(settings, "dashboard", "--tenant", "acme")
    assert written.returncode == 0, written.stderr
    html = (settings.data_dir / "dashboard.html").read_text()
    assert html.count('class="chart"') == 5 and "tenant: acme" in html and "<script" not in html

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "dashboard", "--serve", "--port", str(port)],
        env=processes.settings_env(settings),
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def fetch() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    body: str = response.read().decode()
                    return body
            except OSError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                return None

        served = wait_until(fetch, 60, "the dashboard server to answer")
        assert "tenant: all" in served and served.count('class="chart"') == 5
    finally:
        server.terminate()
        server.wait(timeout=10)
