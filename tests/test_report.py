"""`riverbed report`: each section's numbers against hand-computed ones on rows written through the
real ClickHouse engine, the tenant and time filters, and the command's JSON/CSV output."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sinks.clickhouse import TRACE_COLUMNS, ClickHouseClient, connect, migrate, trace_row
from sinks.report import ReportScope, build_report
from streams.config import Settings
from tests.conftest import cli, in_subprocess

NOW = datetime.now(UTC).replace(microsecond=0)


def trace(event: str, tenant: str, route: str, call: int, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "trace_id": f"{event}-{call}",
        "event_id": event,
        "tenant_id": tenant,
        "workflow": "ticket",
        "workflow_version": "v1",
        "step": "summarize",
        "task": "summarize",
        "attempt": 1,
        "call_attempt": call,
        "route": route,
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": route.split("/")[0],
        "gen_ai_request_model": route.split("/")[1],
        "gen_ai_response_model": route.split("/")[1],
        "gen_ai_usage_input_tokens": 100,
        "gen_ai_usage_output_tokens": 20,
        "prompt_version": "p1",
        "latency_ms": 50.0,
        "cost_usd": Decimal("0.001"),
        "price_version": "t",
        "cache_status": "miss",
        "status": "ok",
        "error_class": None,
        "started_at": NOW - timedelta(minutes=10),
    }
    return record | extra


ROWS = [
    # e1 (acme): a timeout on the cheap route, then the fallback answers
    trace(
        "e1",
        "acme",
        "llm/cheap",
        1,
        status="error",
        error_class="ProviderTimeout",
        cost_usd=None,
        gen_ai_usage_input_tokens=0,
        gen_ai_usage_output_tokens=0,
        latency_ms=5000.0,
    ),
    # the gateway marks the first call on a route other than the first (gateway/tracing.py)
    trace("e1", "acme", "llm/big", 2, fell_back=True, cost_usd=Decimal("0.002"), latency_ms=100.0),
    trace("e2", "acme", "llm/cheap", 1),
    trace("e3", "globex", "llm/cheap", 1, cache_status="hit", cost_usd=Decimal(0), latency_ms=0.02),
    trace("old", "acme", "llm/cheap", 1, started_at=NOW - timedelta(days=30), cost_usd=Decimal("9")),
]


def seed(client: ClickHouseClient) -> None:
    migrate(client)
    client.insert("traces", [trace_row(r, NOW) for r in ROWS], TRACE_COLUMNS)


@pytest.fixture(scope="module")
def report_db(broker: Settings) -> Iterator[ClickHouseClient]:
    client = connect(broker.effective_clickhouse_dsn, "report_test")
    seed(client)
    yield client
    client.close()


def scope(tenant: str = "") -> ReportScope:
    return ReportScope(NOW - timedelta(days=1), NOW + timedelta(minutes=1), tenant)


def test_sections_match_hand_computed_figures(report_db: ClickHouseClient) -> None:
    report = build_report(report_db, scope())

    cost = {(r["tenant_id"], r["route"]): r for r in report["cost"]}
    assert cost[("acme", "llm/big")]["total_cost_usd"] == Decimal("0.002")
    assert cost[("acme", "llm/cheap")]["calls"] == 2 and cost[("acme", "llm/cheap")][
        "total_cost_usd"
    ] == Decimal("0.001")
    # e1's timeout has a NULL cost, but a failed attempt is not a call with a missing price
    assert cost[("acme", "llm/cheap")]["unpriced_calls"] == 0
    assert sum(r["total_cost_usd"] for r in report["cost"]) == Decimal("0.003")  # the 30-day-old $9 is out

    (fallbacks,) = report["fallbacks"]
    assert (fallbacks["calls"], fallbacks["retried"], fallbacks["fell_back"]) == (3, 1, 1)
    assert fallbacks["fallback_rate"] == pytest.approx(1 / 3, abs=1e-4)

    (cache,) = report["cache"]
    assert (cache["calls"], cache["reused"], cache["hit_rate"]) == (4, 1, 0.25)

    assert [(e["error_class"], e["attempts"]) for e in report["errors"]] == [("ProviderTimeout", 1)]
    assert [(e["event_id"], e["total_cost_usd"]) for e in report["top_cost_events"]] == [
        ("e1", Decimal("0.002")),
        ("e2", Decimal("0.001")),
    ]
    latency = {r["route"]: r for r in report["latency"]}
    assert latency["llm/big"]["p50"] == 100.0 and latency["llm/cheap"]["calls"] == 2  # errors excluded


def test_tenant_filter(report_db: ClickHouseClient) -> None:
    report = build_report(report_db, scope("globex"))
    assert {r["tenant_id"] for r in report["cost"]} == {"globex"}
    assert report["top_cost_events"] == [] and report["errors"] == []


def seed_database() -> None:
    """Run in a subprocess: chdb lets one process own a data path, and the test process owns another."""
    settings = Settings()
    client = connect(settings.effective_clickhouse_dsn, settings.clickhouse_database)
    seed(client)
    client.close()


def test_report_command_prints_json_and_csv(base_settings: Settings, tmp_path: Path) -> None:
    settings = base_settings.model_copy(update={"data_dir": tmp_path / "data"})
    settings.data_dir.mkdir(parents=True)
    in_subprocess(settings, "tests.test_report", "seed_database")

    as_json = cli(settings, "report", "--format", "json", "--tenant", "acme")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert {r["event_id"] for r in report["top_cost_events"]} == {"e1", "e2"}
    assert sorted(r["total_cost_usd"] for r in report["top_cost_events"]) == ["0.001", "0.002"]  # not 1E-3

    as_csv = cli(settings, "report", "--format", "csv", "--section", "errors")
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(r["error_class"], r["attempts"]) for r in rows] == [("ProviderTimeout", "1")]

    table = cli(settings, "report")
    assert table.returncode == 0 and "Most expensive events" in table.stdout

    bad = cli(settings, "report", "--format", "csv")
    assert bad.returncode != 0 and "needs --section" in bad.stderr


def test_rollup_views_add_up_and_trace_an_event_s_cost(report_db: ClickHouseClient) -> None:
    assert report_db.query_scalar("SELECT sum(total_cost_usd) FROM cost_daily") == Decimal("9.003")
    e1 = report_db.query_dicts("SELECT attempts, total_cost_usd, steps FROM event_cost WHERE event_id = 'e1'")
    assert e1 == [{"attempts": 2, "total_cost_usd": Decimal("0.002"), "steps": ["summarize"]}]
    health = report_db.query_dicts(
        "SELECT route, attempts, errors, retry_or_fallback_share FROM model_health_hourly ORDER BY route"
    )
    by_route = {h["route"]: h for h in health if h["attempts"]}
    assert by_route["llm/big"]["retry_or_fallback_share"] == 1.0
    assert sum(h["errors"] for h in health) == 1
