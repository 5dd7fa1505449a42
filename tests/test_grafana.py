"""The Grafana dashboards in infra/grafana: every panel's SQL, expanded the way Grafana and the ClickHouse
plugin expand it, runs on the real ClickHouse engine over the migrated schema and returns the shape its
panel needs; a few figures match hand-computed ones; and the provisioning files, docker-compose.yml and
the dashboards agree on the datasource and the paths.

Grafana cannot run here, so the expansion is emulated, following the code that does it in production:

* template variables (Grafana's frontend): ``$name`` / ``${name}`` / ``${name:format}``. With "All"
  selected Grafana substitutes the variable's ``allValue`` unformatted, but only when it is truthy: an
  empty ``allValue`` falls back to the list of every option. That is why the dashboards use
  ``allValue: "''"`` (an SQL empty-string literal) with ``${tenant:sqlstring}``, and why a tenant id with
  a quote in it is part of the data below.
* macros (the plugin's backend, pkg/macros/macros.go of grafana/clickhouse-datasource v4):
  ``$__timeFilter(c)`` -> ``c >= toDateTime(<from s>) AND c <= toDateTime(<to s>)``,
  ``$__timeInterval(c)`` -> ``toStartOfInterval(toDateTime(c), INTERVAL <n> second)``, and their
  relatives. Anything left with a ``$`` after both steps is a typo Grafana would send to ClickHouse as is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from sinks.clickhouse import (
    RESULT_COLUMNS,
    TRACE_COLUMNS,
    ClickHouseClient,
    connect,
    migrate,
    result_row,
    trace_row,
)
from streams.config import PROJECT_ROOT, Settings

GRAFANA = PROJECT_ROOT / "infra" / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
PLUGIN = "grafana-clickhouse-datasource"
DATASOURCE_UID = "riverbed-clickhouse"
ALL = "$__all"  # the value Grafana gives a variable whose "All" option is selected
FORMAT_TIME_SERIES, FORMAT_TABLE = 0, 1  # sqlutil.FormatQueryOption, as the plugin reads "format"
MAX_DATA_POINTS = 1000  # Grafana sends about the panel's width in pixels

NOW = datetime.now(UTC).replace(microsecond=0)
RANGE_FROM, RANGE_TO = NOW - timedelta(days=7), NOW  # the dashboards' default: now-7d .. now


# ------------------------------------------------------------------------------------------ the data


def trace(event: str, tenant: str, route: str, call: int, minutes_ago: int, **extra: Any) -> dict[str, Any]:
    provider, model = route.split("/")
    record: dict[str, Any] = {
        "trace_id": f"{event}-{call}",
        "event_id": event,
        "tenant_id": tenant,
        "workflow": "ticket",
        "workflow_version": "ticket-1@v1",
        "step": "summarize",
        "task": "summarize",
        "attempt": 1,
        "call_attempt": call,
        "route": route,
        "gen_ai_operation_name": "summarize",
        "gen_ai_provider_name": provider,
        "gen_ai_request_model": model,
        "gen_ai_response_model": model,
        "gen_ai_usage_input_tokens": 100,
        "gen_ai_usage_output_tokens": 20,
        "prompt_version": "p1",
        "latency_ms": 50.0,
        "cost_usd": Decimal("0.001"),
        "price_version": "2026-11-23",
        "cache_status": "miss",
        "status": "ok",
        "error_class": None,
        "started_at": NOW - timedelta(minutes=minutes_ago),
    }
    return record | extra


def failed(error_class: str, **extra: Any) -> dict[str, Any]:
    """A failed attempt as the gateway records it: no tokens, no cost (gateway._record_failure)."""
    return {
        "status": "error",
        "error_class": error_class,
        "error_message": f"{error_class} on the cheap route",
        "cost_usd": None,
        "gen_ai_usage_input_tokens": 0,
        "gen_ai_usage_output_tokens": 0,
        "latency_ms": 5000.0,
        **extra,
    }


TRACES = [
    # e1 (acme): a timeout on the cheap route, then the fallback answers
    trace("e1", "acme", "llm/cheap", 1, 10, **failed("ProviderTimeout")),
    # (the gateway marks the first call off the first route: gateway/tracing.py)
    trace("e1", "acme", "llm/big", 2, 10, fell_back=True, cost_usd=Decimal("0.002"), latency_ms=100.0),
    trace("e2", "acme", "llm/cheap", 1, 180),
    # e3 (globex): answered from the cache, free
    trace("e3", "globex", "llm/cheap", 1, 180, cache_status="hit", cost_usd=Decimal(0), latency_ms=0.02),
    # e4 (globex): a route missing from the price table
    trace(
        "e4", "globex", "llm/mystery", 1, 60 * 24 * 2, task="classify_intent", step="classify", cost_usd=None
    ),
    # e5 (acme): the cheap route's breaker is open, the big one answers
    trace("e5", "acme", "llm/cheap", 1, 60 * 24 * 2, breaker_state="open", **failed("BreakerOpen")),
    trace("e5", "acme", "llm/big", 2, 60 * 24 * 2, fell_back=True, cost_usd=Decimal("0.004")),
    # a tenant id a naive '${tenant}' would break the SQL on
    trace("e6", "o'reilly", "llm/cheap", 1, 30, cost_usd=Decimal("0.0005")),
    # outside the default range: must not count
    trace("old", "acme", "llm/cheap", 1, 60 * 24 * 30, cost_usd=Decimal(9)),
]
REDELIVERED_TRACE = TRACES[2]  # written twice: only FINAL (or a view over it) counts it once
# Hand-computed from TRACES, in range, each trace once:
COST_BY_TENANT = {"acme": 0.002 + 0.001 + 0.004, "globex": 0.0, "o'reilly": 0.0005}


def ticket(event: str, tenant: str, intent: str, minutes_ago: int) -> tuple[str, str, dict[str, Any]]:
    return (
        "ticket.triaged.v1",
        f"r-{event}",
        {
            "ticket_id": f"T-{event}",
            "causation_id": event,
            "tenant_id": tenant,
            "workflow_version": "ticket-1@v1",
            "models": ["llm/big"],
            "intent": intent,
            "intent_confidence": 0.9,
            "priority": "high",
            "similar": [],
            "summary": "card not arrived",
            "entities": [],
            "processed_at": NOW - timedelta(minutes=minutes_ago),
        },
    )


def document(event: str, tenant: str, minutes_ago: int) -> tuple[str, str, dict[str, Any]]:
    return (
        "document.enriched.v1",
        f"r-{event}",
        {
            "document_id": f"D-{event}",
            "causation_id": event,
            "tenant_id": tenant,
            "workflow_version": "document-1@v1",
            "models": ["local/topic-centroids"],
            "labels": [{"name": "billing", "score": 0.7}],
            "chunk_count": 3,
            "summary": "an invoice",
            "entities": [],
            "processed_at": NOW - timedelta(minutes=minutes_ago),
        },
    )


RESULTS = [
    ticket("e1", "acme", "card_arrival", 9),
    ticket("e5", "acme", "card_arrival", 60 * 24 * 2),
    document("e3", "globex", 179),
]


@pytest.fixture(scope="module")
def db(base_settings: Settings) -> Iterator[ClickHouseClient]:
    """The session's chdb data path (a process may open only one), in a database of this module's own."""
    base_settings.clickhouse_path.parent.mkdir(parents=True, exist_ok=True)
    client = connect(base_settings.effective_clickhouse_dsn, "grafana_test")
    migrate(client)
    client.insert("traces", [trace_row(r, NOW) for r in TRACES], TRACE_COLUMNS)
    client.insert("traces", [trace_row(REDELIVERED_TRACE, NOW + timedelta(seconds=1))], TRACE_COLUMNS)
    rows = [result_row(topic, event_id, record, NOW) for topic, event_id, record in RESULTS]
    client.insert("results", rows, RESULT_COLUMNS)
    client.insert("results", rows[:1], RESULT_COLUMNS)  # a redelivered result
    yield client
    client.close()


# ------------------------------------------------------------------------------------ the dashboards


def load(path: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return dashboard


DASHBOARDS = {path.name: load(path) for path in DASHBOARD_FILES}


def panels_of(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A collapsed row keeps its panels inside itself: a flat walk of ``panels`` would skip them."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    title: str
    kind: str
    raw_sql: str
    min_interval_s: int
    overrides: tuple[str, ...]  # column names the panel's field overrides refer to

    def __str__(self) -> str:
        return f"{self.dashboard}: {self.title}"


_DURATION = re.compile(r"^(\d+)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(duration: str) -> int:
    match = _DURATION.match(duration)
    assert match, f"interval {duration!r} is not of the form <n>[smhd]"
    return int(match.group(1)) * _SECONDS[match.group(2)]


def panel_queries() -> list[PanelQuery]:
    queries = []
    for name, dashboard in DASHBOARDS.items():
        for panel in panels_of(dashboard):
            names = tuple(
                str(o["matcher"]["options"])
                for o in panel.get("fieldConfig", {}).get("overrides", [])
                if o["matcher"]["id"] == "byName"
            )
            for target in panel.get("targets", []):
                queries.append(
                    PanelQuery(
                        dashboard=name,
                        title=panel["title"],
                        kind=panel["type"],
                        raw_sql=target["rawSql"],
                        min_interval_s=seconds(panel["interval"]) if "interval" in panel else 1,
                        overrides=names,
                    )
                )
    return queries


QUERIES = panel_queries()


def tenant_variable(dashboard: Mapping[str, Any]) -> dict[str, Any]:
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "tenant"]
    return dict(variable)


def find(title: str) -> PanelQuery:
    (query,) = [q for q in QUERIES if q.title == title]
    return query


# ------------------------------------------------------------------------- Grafana and plugin emulation


def sqlstring(value: str) -> str:
    """Grafana's ``sqlstring`` format: quotes doubled, double quotes backslash-escaped, single-quoted."""
    return "'" + value.replace("'", "''").replace('"', '\\"') + "'"


def format_value(value: str | list[str], fmt: str | None) -> str:
    values = value if isinstance(value, list) else [value]
    if fmt is None:  # no format given: the plugin's own formatter (CHDatasource.format)
        return "'" + "','".join(values) + "'" if isinstance(value, list) else value
    if fmt == "sqlstring":
        return ",".join(sqlstring(v) for v in values)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt in ("raw", "csv"):
        return ",".join(values)
    raise AssertionError(f"variable format {fmt!r} is not emulated here: add it or use sqlstring")


_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


def interpolate_variables(
    sql: str,
    variables: Mapping[str, Mapping[str, Any]],
    selected: Mapping[str, str],
    options: Mapping[str, list[str]],
) -> str:
    """What Grafana's template service does before the query leaves the browser."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        if name not in variables:
            return match.group(0)  # a macro or a global variable: not this step's business
        fmt = match.group(2)
        value = selected[name]
        if value != ALL:
            return format_value(value, fmt)
        all_value = variables[name].get("allValue")
        if all_value:  # a truthy custom all value goes in unformatted (scenes' CustomAllValue)
            return "All" if fmt == "text" else str(all_value)
        return format_value(options[name], fmt)

    return _VARIABLE.sub(replace, sql)


_MACRO = re.compile(r"\$__(\w+)(?:\(([^()]*)\))?")


def expand_macros(sql: str, start: datetime, end: datetime, interval_s: int) -> str:
    """The plugin's backend macros (grafana/clickhouse-datasource pkg/macros/macros.go)."""
    interval_s = max(interval_s, 1)

    def datetime_s(t: datetime) -> str:
        return f"toDateTime({int(t.timestamp())})"

    def datetime_ms(t: datetime) -> str:
        return f"fromUnixTimestamp64Milli({int(t.timestamp() * 1000)})"

    def date(t: datetime) -> str:
        return f"toDate('{t.astimezone(UTC):%Y-%m-%d}')"

    def replace(match: re.Match[str]) -> str:
        name, raw_args = match.group(1), match.group(2)
        args = [a.strip() for a in raw_args.split(",")] if raw_args is not None else []

        def one() -> str:
            assert len(args) == 1, f"$__{name} takes one argument, got {args}"
            return args[0]

        if name in ("fromTime", "toTime", "fromTime_ms", "toTime_ms", "interval_s"):
            assert raw_args is None, f"$__{name} takes no arguments"
        expansions = {
            "fromTime": lambda: datetime_s(start),
            "toTime": lambda: datetime_s(end),
            "fromTime_ms": lambda: datetime_ms(start),
            "toTime_ms": lambda: datetime_ms(end),
            "timeFilter": lambda: f"{one()} >= {datetime_s(start)} AND {one()} <= {datetime_s(end)}",
            "timeFilter_ms": lambda: f"{one()} >= {datetime_ms(start)} AND {one()} <= {datetime_ms(end)}",
            "dateFilter": lambda: f"{one()} >= {date(start)} AND {one()} <= {date(end)}",
            "timeInterval": lambda: f"toStartOfInterval(toDateTime({one()}), INTERVAL {interval_s} second)",
            "timeInterval_ms": lambda: (
                f"toStartOfInterval(toDateTime64({one()}, 3), INTERVAL {interval_s * 1000} millisecond)"
            ),
            "interval_s": lambda: str(interval_s),
        }
        if name not in expansions:
            return match.group(0)  # unknown: left in place, and caught by the caller
        return expansions[name]()

    return _MACRO.sub(replace, sql)


def grafana_interval_s(min_interval_s: int) -> int:
    """Roughly Grafana's $__interval: the range over the data points, never under the panel's minimum."""
    return max(min_interval_s, int((RANGE_TO - RANGE_FROM).total_seconds()) // MAX_DATA_POINTS)


def expand(
    sql: str, dashboard: Mapping[str, Any], tenant: str, tenants: list[str], min_interval_s: int = 1
) -> str:
    variable = tenant_variable(dashboard)
    sql = interpolate_variables(sql, {"tenant": variable}, {"tenant": tenant}, {"tenant": tenants})
    sql = expand_macros(sql, RANGE_FROM, RANGE_TO, grafana_interval_s(min_interval_s))
    leftover = re.findall(r"\$\S*", sql)
    assert not leftover, f"not expanded (a typo'd macro or variable?): {leftover}"
    return sql


def tenant_options(db: ClickHouseClient, dashboard: Mapping[str, Any]) -> list[str]:
    """The tenant variable's options, from its own query, as Grafana would load them."""
    sql = expand(tenant_variable(dashboard)["query"]["rawSql"], dashboard, ALL, [])
    return [str(row[0]) for row in db.query_rows(sql)]


def run(db: ClickHouseClient, query: PanelQuery, tenant: str) -> list[dict[str, Any]]:
    dashboard = DASHBOARDS[query.dashboard]
    sql = expand(query.raw_sql, dashboard, tenant, tenant_options(db, dashboard), query.min_interval_s)
    return db.query_dicts(sql)


# ----------------------------------------------------------------------------------------- structure


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_structure(name: str) -> None:
    dashboard = DASHBOARDS[name]
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 39
    assert dashboard["time"] == {"from": "now-7d", "to": "now"}

    variable = tenant_variable(dashboard)
    assert variable["type"] == "query" and variable["includeAll"] is True
    # a falsy allValue would make Grafana substitute the list of every tenant (see the module docstring)
    assert variable["allValue"] == "''"
    assert variable["datasource"] == {"type": PLUGIN, "uid": DATASOURCE_UID}

    panels = [p for p in panels_of(dashboard) if p["type"] != "row"]
    ids = [p["id"] for p in panels_of(dashboard)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}"
    cells: dict[tuple[int, int], str] = {}
    for panel in panels_of(dashboard):
        grid = panel["gridPos"]
        x, y, w, h = (grid[k] for k in ("x", "y", "w", "h"))
        assert all(isinstance(v, int) for v in (x, y, w, h)) and w > 0 and h > 0, panel["title"]
        assert x >= 0 and x + w <= 24, f"{panel['title']} is wider than the 24-column grid"
        for cell in ((cx, cy) for cx in range(x, x + w) for cy in range(y, y + h)):
            assert cell not in cells, f"{panel['title']} overlaps {cells[cell]}"
            cells[cell] = panel["title"]

    for panel in panels:
        assert panel["datasource"] == {"type": PLUGIN, "uid": DATASOURCE_UID}, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == {"type": PLUGIN, "uid": DATASOURCE_UID}, panel["title"]
            assert target["editorType"] == "sql", panel["title"]
            want = FORMAT_TIME_SERIES if panel["type"] == "timeseries" else FORMAT_TABLE
            assert target["format"] == want, f"{panel['title']}: format {target['format']}, want {want}"
            check_sql_conventions(panel["title"], target["rawSql"])


_UNFINAL = re.compile(
    r"\b(?:FROM|JOIN)\s+(?:`?\w+`?\.)?(?:traces|results)\b(?!\s+(?:AS\s+\w+\s+)?FINAL\b)", re.I
)


def check_sql_conventions(title: str, sql: str) -> None:
    """Redelivered rows are only folded by FINAL; and every panel answers to the tenant picker, quoted
    the one way that survives both "All" and a tenant id containing a quote."""
    assert not _UNFINAL.search(sql), f"{title}: read traces/results with FINAL (or a view)"
    assert "${tenant:sqlstring}" in sql, f"{title}: no tenant filter"
    rest = sql.replace("${tenant:sqlstring}", "")
    assert "$tenant" not in rest and "${tenant" not in rest, f"{title}: tenant not as ${{tenant:sqlstring}}"


def test_provisioning_compose_and_dashboards_agree() -> None:
    (datasource,) = yaml.safe_load((GRAFANA / "provisioning/datasources/clickhouse.yaml").read_text())[
        "datasources"
    ]
    assert (datasource["type"], datasource["uid"]) == (PLUGIN, DATASOURCE_UID)
    data = datasource["jsonData"]
    assert data["defaultDatabase"] == Settings().clickhouse_database
    assert {"native": 9000, "http": 8123}[data["protocol"]] == data["port"]

    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    clickhouse, grafana = services[data["host"]], services["grafana"]
    assert data["username"] == clickhouse["environment"]["CLICKHOUSE_USER"]
    password = datasource["secureJsonData"]["password"]
    assert re.fullmatch(r"\$\{?CLICKHOUSE_PASSWORD\}?", password), "password from Grafana's environment"
    assert grafana["environment"]["CLICKHOUSE_PASSWORD"] == clickhouse["environment"]["CLICKHOUSE_PASSWORD"]
    assert PLUGIN in grafana["environment"]["GF_INSTALL_PLUGINS"]
    assert re.fullmatch(r"grafana/grafana:12\.\d+\.\d+", grafana["image"]), "pin the Grafana image"
    assert "clickhouse" in grafana["depends_on"]

    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    assert mounts["./infra/grafana/provisioning"] == "/etc/grafana/provisioning"
    (provider,) = yaml.safe_load((GRAFANA / "provisioning/dashboards/riverbed.yaml").read_text())["providers"]
    assert provider["type"] == "file"
    assert mounts["./infra/grafana/dashboards"] == provider["options"]["path"]

    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(DASHBOARDS) >= 2 and len(uids) == len(set(uids))


# --------------------------------------------------------------------------------------- the queries


def is_number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float | Decimal) and not isinstance(value, bool))


def check_shape(query: PanelQuery, rows: Sequence[Mapping[str, Any]]) -> None:
    """What each panel type needs from its frame (the plugin passes table frames through unchanged and
    turns long time series into wide ones, which requires a time column sorted ascending)."""
    columns = list(rows[0])
    values = {c: [r[c] for r in rows] for c in columns}
    if query.kind == "timeseries":
        assert columns[0] == "time", f"{query}: time series must return `time` first, got {columns}"
        times = values["time"]
        assert all(isinstance(t, datetime) for t in times), f"{query}: time is not a DateTime"
        assert times == sorted(times), f"{query}: ORDER BY time (long-to-wide needs it ascending)"
        numeric = [c for c in columns[1:] if all(is_number(v) for v in values[c])]
        labels = [c for c in columns[1:] if all(isinstance(v, str) for v in values[c])]
        assert numeric, f"{query}: no value column"
        assert set(numeric) | set(labels) == set(columns[1:]), f"{query}: a column is neither value nor label"
    elif query.kind == "stat":
        assert len(rows) == 1 and all(is_number(v) for v in rows[0].values()), f"{query}: one row of numbers"
    elif query.kind == "barchart":
        assert all(isinstance(v, str) for v in values[columns[0]]), f"{query}: first column is the category"
        assert len(columns) > 1 and all(all(is_number(v) for v in values[c]) for c in columns[1:]), str(query)
    for name in query.overrides:
        assert name in columns, f"{query}: field override for {name!r}, which the query does not return"


@pytest.mark.parametrize("query", QUERIES, ids=str)
def test_every_panel_returns_what_its_panel_draws(db: ClickHouseClient, query: PanelQuery) -> None:
    rows = run(db, query, ALL)
    assert rows, f"{query}: no rows for the seeded data"
    check_shape(query, rows)
    for tenant in ("acme", "o'reilly"):
        filtered = run(db, query, tenant)
        assert all(r["tenant_id"] == tenant for r in filtered if "tenant_id" in r), f"{query}: {tenant}"


def test_tenant_options_come_from_the_traces(db: ClickHouseClient) -> None:
    for dashboard in DASHBOARDS.values():
        assert tenant_options(db, dashboard) == sorted(COST_BY_TENANT)  # the 30-day-old row is acme too


def test_figures_match_hand_computed_ones(db: ClickHouseClient) -> None:
    (total,) = run(db, find("Total cost"), ALL)
    assert total["total_cost_usd"] == pytest.approx(sum(COST_BY_TENANT.values()))  # once each, in range
    (acme,) = run(db, find("Total cost"), "acme")
    assert acme["total_cost_usd"] == pytest.approx(COST_BY_TENANT["acme"])

    by_tenant = {r["tenant_id"]: r["total_cost_usd"] for r in run(db, find("Cost by tenant"), ALL)}
    assert by_tenant == pytest.approx(COST_BY_TENANT)
    daily = run(db, find("Daily cost by tenant"), ALL)
    # a day with only unpriced calls (globex, e4) is NULL: unknown, not zero
    assert sum(r["cost_usd"] or 0 for r in daily) == pytest.approx(sum(COST_BY_TENANT.values()))
    assert any(r["cost_usd"] is None for r in daily)

    assert run(db, find("Unpriced successful calls"), ALL) == [{"unpriced_calls": 1}]  # e4; errors aside
    top = run(db, find("Most expensive events"), ALL)[0]
    assert (top["event_id"], top["attempts"], top["step_list"]) == ("e5", 2, "summarize")
    assert top["event_cost_usd"] == pytest.approx(0.004)

    fallbacks = {r["task"]: r for r in run(db, find("Retries and fallbacks by task"), ALL)}
    summarize = fallbacks["summarize"]  # e1 and e5 fell back, out of e1, e2, e3, e5, e6
    assert (summarize["calls"], summarize["retried"], summarize["fell_back"]) == (5, 2, 2)
    assert summarize["fallback_rate"] == pytest.approx(0.4)
    errors = {r["error_class"]: r["attempts"] for r in run(db, find("Errors by task, model and class"), ALL)}
    assert errors == {"ProviderTimeout": 1, "BreakerOpen": 1}

    results = run(db, find("Results per workflow"), ALL)
    per_workflow = {
        w: sum(r["results"] for r in results if r["workflow"] == w) for w in ("ticket", "document")
    }
    assert per_workflow == {"ticket": 2, "document": 1}  # the redelivered result once


def test_the_checks_catch_typos_and_naive_quoting(db: ClickHouseClient) -> None:
    """The emulation must fail where Grafana would: otherwise the tests above prove nothing."""
    dashboard = next(iter(DASHBOARDS.values()))
    with pytest.raises(AssertionError, match="not expanded"):
        expand("SELECT 1 FROM traces FINAL WHERE $__timeFiltr(started_at)", dashboard, ALL, [])

    naive = "SELECT count() FROM traces FINAL WHERE ('${tenant}' = '' OR tenant_id = '${tenant}')"
    tenants = tenant_options(db, dashboard)
    with pytest.raises(Exception):  # noqa: B017 - ClickHouse's syntax error, whatever its class
        db.query_rows(expand(naive, dashboard, "o'reilly", tenants))
    empty_all = dashboard | {"templating": {"list": [tenant_variable(dashboard) | {"allValue": ""}]}}
    with pytest.raises(Exception):  # noqa: B017 - '' as allValue: Grafana sends every tenant, quoted
        db.query_rows(expand(naive, empty_all, ALL, tenants))
