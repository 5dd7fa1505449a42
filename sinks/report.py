"""The questions ops and analysts ask first, as named ClickHouse queries over a time range and an
optional tenant: what ran, what it cost and where, how slow, how often caches hit and fallbacks
fired, what failed, and which events cost most. `riverbed report` renders them; scripts take JSON/CSV.

Every query reads ``traces FINAL`` / ``results FINAL`` so a redelivered row is counted once. Trace
queries add ``do_not_merge_across_partitions_select_final``: every copy of a trace shares its event
day's partition (migration 0011), so de-duplicating within partitions is exact, and a compacted
partition (one part: sinks/compaction.py) is then read without merging at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sinks.clickhouse import ClickHouseClient

TRACE_FILTER = (
    "started_at >= {start:DateTime64(6)} AND started_at < {end:DateTime64(6)} "
    "AND ({tenant:String} = '' OR tenant_id = {tenant:String})"
)
TRACE_FINAL = "SETTINGS do_not_merge_across_partitions_select_final = 1"
"""Appended to every query over ``traces FINAL``."""
RESULT_FILTER = (
    "processed_at >= {start:DateTime64(6)} AND processed_at < {end:DateTime64(6)} "
    "AND ({tenant:String} = '' OR tenant_id = {tenant:String})"
)


@dataclass(frozen=True)
class Section:
    title: str
    sql: str


SECTIONS: dict[str, Section] = {
    "volume": Section(
        "Volume",
        f"SELECT workflow, count() AS events, countIf(redaction_count > 0) AS events_with_pii_masked "
        f"FROM results FINAL WHERE {RESULT_FILTER} GROUP BY workflow ORDER BY workflow",
    ),
    "cost": Section(
        "Cost by tenant, task and model",
        f"SELECT tenant_id, task, route, count() AS calls, sum(gen_ai_usage_input_tokens) AS input_tokens, "
        f"sum(gen_ai_usage_output_tokens) AS output_tokens, sum(cost_usd) AS total_cost_usd, "
        f"countIf(cost_usd IS NULL AND status = 'ok') AS unpriced_calls "
        f"FROM traces FINAL WHERE {TRACE_FILTER} GROUP BY tenant_id, task, route "
        f"ORDER BY total_cost_usd DESC, calls DESC {TRACE_FINAL}",
    ),
    "latency": Section(
        "Latency by step and model (ms)",
        f"SELECT workflow, step, route, count() AS calls, "
        f"round(quantile(0.5)(latency_ms), 2) AS p50, round(quantile(0.95)(latency_ms), 2) AS p95, "
        f"round(quantile(0.99)(latency_ms), 2) AS p99 "
        f"FROM traces FINAL WHERE {TRACE_FILTER} AND status = 'ok' "
        f"GROUP BY workflow, step, route ORDER BY workflow, step, route {TRACE_FINAL}",
    ),
    "cache": Section(
        "Cache hit rate by task",
        f"SELECT task, count() AS calls, countIf(cache_status != 'miss') AS reused, "
        f"round(countIf(cache_status != 'miss') / count(), 4) AS hit_rate "
        f"FROM traces FINAL WHERE {TRACE_FILTER} GROUP BY task ORDER BY task {TRACE_FINAL}",
    ),
    # One gateway invocation (event, step, delivery attempt) numbers its calls from 1, and marks the
    # first call on a route other than its first one (fell_back): so invocations, retried ones (more
    # than one call) and fallen-back ones are plain counts, no grouping by event. The column is named
    # through its table so that the alias of the same name cannot shadow it.
    "fallbacks": Section(
        "Retries and fallbacks by task",
        f"SELECT task, countIf(call_attempt = 1) AS calls, countIf(call_attempt = 2) AS retried, "
        f"countIf(traces.fell_back) AS fell_back, round(fell_back / calls, 4) AS fallback_rate "
        f"FROM traces FINAL WHERE {TRACE_FILTER} GROUP BY task HAVING calls > 0 ORDER BY task {TRACE_FINAL}",
    ),
    "errors": Section(
        "Errors by class",
        f"SELECT task, error_class, count() AS attempts, any(error_message) AS example "
        f"FROM traces FINAL WHERE {TRACE_FILTER} AND status = 'error' "
        f"GROUP BY task, error_class ORDER BY attempts DESC {TRACE_FINAL}",
    ),
    # Only priced calls can make an event expensive: the ten are picked among those (a fraction of the
    # traces), then counted over all their calls.
    "top_cost_events": Section(
        "Most expensive events",
        f"SELECT event_id, tenant_id, workflow, count() AS calls, sum(cost_usd) AS total_cost_usd "
        f"FROM traces FINAL WHERE {TRACE_FILTER} AND event_id IN ("
        f" SELECT event_id FROM traces FINAL WHERE {TRACE_FILTER} AND cost_usd > 0"
        f" GROUP BY event_id ORDER BY sum(cost_usd) DESC, event_id LIMIT 10"
        f") GROUP BY event_id, tenant_id, workflow "
        f"ORDER BY total_cost_usd DESC, event_id {TRACE_FINAL}",
    ),
}


@dataclass(frozen=True)
class ReportScope:
    start: datetime
    end: datetime
    tenant: str = ""


def section_rows(client: ClickHouseClient, name: str, scope: ReportScope) -> list[dict[str, Any]]:
    """One section as a list of {column: value}; column names come from the query."""
    return client.query_dicts(SECTIONS[name].sql, report_parameters(scope))


def build_report(client: ClickHouseClient, scope: ReportScope) -> dict[str, list[dict[str, Any]]]:
    return {name: section_rows(client, name, scope) for name in SECTIONS}


def report_parameters(scope: ReportScope) -> dict[str, Any]:
    return {"start": scope.start, "end": scope.end, "tenant": scope.tenant}
