"""`riverbed dashboard`: the report's questions as one self-contained HTML page — cost over time by
model, latency percentiles, cache and fallback rates, error mix, the most expensive events — that an
analyst can open offline, attach to an incident, or have served live on loopback.

It reads the same ClickHouse queries as `riverbed report` (sinks/report.py) so the page and the
terminal never disagree, plus a timeline query of its own. Charts are SVG drawn in Python
(sinks/charts.py): the file has no scripts and fetches nothing.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import resources
from typing import Any

from jinja2 import Environment, select_autoescape

from sinks import charts
from sinks.clickhouse import ClickHouseClient
from sinks.report import TRACE_FILTER, ReportScope, report_parameters, section_rows

BUCKET_SECONDS = (1, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)
"""Timeline bucket widths to choose from: the smallest giving at most ``MAX_BUCKETS`` columns over
the span the data actually covers, so a three-minute run and a month both read well."""
MAX_BUCKETS = 60

_HEADLINE_SQL = (
    "SELECT count() AS calls, uniqExact(event_id) AS events, sum(cost_usd) AS total_cost_usd, "
    "countIf(status = 'error') AS errors, countIf(cache_status != 'miss') AS reused, "
    "quantileIf(0.95)(latency_ms, status = 'ok') AS p95_ms, "
    "min(started_at) AS first_call, max(started_at) AS last_call "
    f"FROM traces FINAL WHERE {TRACE_FILTER}"
)

_TIMELINE_SQL = (
    "SELECT toStartOfInterval(started_at, toIntervalSecond({bucket:UInt32})) AS bucket, route, "
    "sum(ifNull(cost_usd, 0)) AS cost_usd, count() AS calls "
    f"FROM traces FINAL WHERE {TRACE_FILTER} GROUP BY bucket, route ORDER BY bucket, route"
)


@dataclass(frozen=True)
class Chart:
    """One panel: ``key`` names it for tests and links, ``svg`` is empty when there is nothing to draw
    and ``note`` then says why (no rows, or every call was free)."""

    key: str
    title: str
    svg: str
    note: str = ""


@dataclass(frozen=True)
class Dashboard:
    scope: ReportScope
    generated_at: datetime
    headline: dict[str, Any]
    charts: list[Chart]
    top_events: list[dict[str, Any]]


def bucket_seconds(first: datetime | None, last: datetime | None) -> int:
    span = (last - first).total_seconds() if first and last else 0.0
    return next((b for b in BUCKET_SECONDS if span / b <= MAX_BUCKETS), BUCKET_SECONDS[-1])


def format_usd(value: float) -> str:
    """Dollars with three significant digits for sub-dollar amounts (LLM calls cost fractions of a
    cent), never fewer than two decimals, no trailing zeros beyond them."""
    if value == 0:
        return "$0"
    digits = max(2, min(9, 2 - math.floor(math.log10(abs(value)))))
    text = f"{value:,.{digits}f}"
    while text.endswith("0") and len(text.split(".")[1]) > 2:
        text = text[:-1]
    return f"${text}"


def format_ms(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 10 or value == 0 else f"{value:.2f} ms"


def format_rate(value: float) -> str:
    return f"{value * 100:.1f}%"


def format_count(value: float) -> str:
    return f"{value:,.0f}"


def build_dashboard(client: ClickHouseClient, scope: ReportScope) -> Dashboard:
    params = report_parameters(scope)
    headline = client.query_dicts(_HEADLINE_SQL, params)[0]
    headline["results"] = sum(r["events"] for r in section_rows(client, "volume", scope))
    bucket = bucket_seconds(headline["first_call"], headline["last_call"]) if headline["calls"] else 60
    timeline = client.query_dicts(_TIMELINE_SQL, params | {"bucket": bucket})
    time_format = "%m-%d" if bucket >= 86400 else "%H:%M" if bucket >= 60 else "%H:%M:%S"
    return Dashboard(
        scope=scope,
        generated_at=datetime.now(UTC),
        headline=headline,
        charts=[
            _timeline_chart("cost_over_time", "Cost over time by model", timeline, "cost_usd", time_format),
            _timeline_chart("calls_over_time", "Calls over time by model", timeline, "calls", time_format),
            _latency_chart(section_rows(client, "latency", scope)),
            _rates_chart(section_rows(client, "cache", scope), section_rows(client, "fallbacks", scope)),
            _errors_chart(section_rows(client, "errors", scope)),
        ],
        top_events=section_rows(client, "top_cost_events", scope),
    )


def _timeline_chart(key: str, title: str, rows: list[dict[str, Any]], column: str, time_format: str) -> Chart:
    buckets = sorted({r["bucket"] for r in rows})
    position = {b: i for i, b in enumerate(buckets)}
    # every route in the range, sorted, in both timelines: a model keeps its colour across charts
    series = {route: [0.0] * len(buckets) for route in sorted({r["route"] for r in rows})}
    for r in rows:
        series[r["route"]][position[r["bucket"]]] += float(r[column])
    if not rows:
        return Chart(key, title, "", "No model calls in this range.")
    if not any(any(values) for values in series.values()):
        return Chart(
            key, title, "", "$0: every call in this range was answered by a free route (local tier or cache)."
        )
    if column == "cost_usd":
        return Chart(key, title, charts.stacked_columns(buckets, series, format_usd, time_format))
    return Chart(key, title, charts.stacked_columns(buckets, series, format_count, time_format, whole=True))


def _latency_chart(rows: list[dict[str, Any]]) -> Chart:
    title = "Latency percentiles by step and model"
    if not rows:
        return Chart("latency", title, "", "No successful calls in this range.")
    categories = [f"{r['workflow']}.{r['step']} · {r['route']}" for r in rows]
    series = {q: [float(r[q]) for r in rows] for q in ("p50", "p95", "p99")}
    return Chart("latency", title, charts.grouped_bars(categories, series, format_ms))


def _rates_chart(cache_rows: list[dict[str, Any]], fallback_rows: list[dict[str, Any]]) -> Chart:
    title = "Cache hit and fallback rates by task"
    if not cache_rows:
        return Chart("rates", title, "", "No model calls in this range.")
    fallback = {r["task"]: float(r["fallback_rate"]) for r in fallback_rows}
    tasks = [r["task"] for r in cache_rows]
    series = {
        "cache hit rate": [float(r["hit_rate"]) for r in cache_rows],
        "fallback rate": [fallback.get(t, 0.0) for t in tasks],
    }
    return Chart("rates", title, charts.grouped_bars(tasks, series, format_rate, max_value=1.0))


def _errors_chart(rows: list[dict[str, Any]]) -> Chart:
    title = "Error mix (failed attempts by class)"
    by_class: dict[str, int] = defaultdict(int)
    for r in rows:
        by_class[r["error_class"] or "unknown"] += int(r["attempts"])
    if not by_class:
        return Chart("errors", title, "", "No failed attempts in this range.")
    ordered = sorted(by_class.items(), key=lambda kv: -kv[1])
    series = {"attempts": [float(n) for _, n in ordered]}
    return Chart(
        "errors", title, charts.grouped_bars([c for c, _ in ordered], series, format_count, whole=True)
    )


def render_html(dashboard: Dashboard) -> str:
    env = Environment(autoescape=select_autoescape(default=True))
    env.filters["usd"] = lambda v: "—" if v is None else format_usd(float(v))
    env.filters["ms"] = lambda v: "—" if v is None else format_ms(float(v))
    env.filters["num"] = lambda v: format_count(float(v or 0))
    template = env.from_string(resources.files("sinks").joinpath("dashboard.html.j2").read_text("utf-8"))
    head = dashboard.headline
    calls = int(head["calls"])
    tiles = [
        ("Events with results", format_count(head["results"])),
        ("Model calls", format_count(calls)),
        ("Total cost", format_usd(float(head["total_cost_usd"] or Decimal(0)))),
        ("p95 latency (ok calls)", format_ms(float(head["p95_ms"])) if calls else "—"),
        ("Cache reuse", format_rate(head["reused"] / calls) if calls else "—"),
        ("Failed attempts", format_rate(head["errors"] / calls) if calls else "—"),
    ]
    return template.render(d=dashboard, tiles=tiles)


def serve_forever(render: Callable[[], str], port: int, host: str = "127.0.0.1") -> None:
    """Serve the page on loopback, rebuilt on every request so a refresh shows the latest rows.

    Single-threaded on purpose: one ClickHouse client (an embedded chdb session is not shared across
    threads) and one analyst at a time is what a loopback dashboard serves."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path not in ("/", "/index.html"):
                self.send_error(404)
                return
            try:
                body = render().encode("utf-8")
            except Exception as exc:  # the page says what broke instead of a dropped connection
                self.send_error(503, f"could not query ClickHouse: {exc}")
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with HTTPServer((host, port), Handler) as server:
        server.serve_forever()
