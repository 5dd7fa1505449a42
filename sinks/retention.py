"""Retention per table as configuration: how long traces, their prompt/output previews and results
are kept. Migrations create the tables with defaults; this brings the TTLs to the configured days.

A TTL change makes ClickHouse re-evaluate existing parts, so only TTLs that differ from the table's
current definition (read from ``system.tables``) are altered: running it on every start is cheap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sinks.clickhouse import ClickHouseClient
from streams.config import Settings


@dataclass(frozen=True)
class Retention:
    traces_days: int
    previews_days: int
    results_days: int


def retention_of(settings: Settings) -> Retention:
    return Retention(
        settings.retention_traces_days, settings.retention_previews_days, settings.retention_results_days
    )


@dataclass(frozen=True)
class _Ttl:
    table: str
    current: re.Pattern[str]
    """Finds the days of this TTL in the table's CREATE query."""
    statement: str


def _rules(database: str, retention: Retention) -> list[tuple[_Ttl, int]]:
    db = f"`{database}`"
    preview = "String DEFAULT '' CODEC(ZSTD(3)) TTL toDateTime(started_at) + INTERVAL {days} DAY"
    return [
        (
            _Ttl(
                "traces",
                re.compile(r"TTL started_at \+ toIntervalDay\((\d+)\)"),
                f"ALTER TABLE {db}.traces MODIFY TTL started_at + INTERVAL {{days}} DAY",
            ),
            retention.traces_days,
        ),
        (
            _Ttl(
                "traces",
                re.compile(r"`input_preview` String[^\n]*?toIntervalDay\((\d+)\)"),
                f"ALTER TABLE {db}.traces MODIFY COLUMN input_preview {preview}",
            ),
            retention.previews_days,
        ),
        (
            _Ttl(
                "traces",
                re.compile(r"`output_preview` String[^\n]*?toIntervalDay\((\d+)\)"),
                f"ALTER TABLE {db}.traces MODIFY COLUMN output_preview {preview}",
            ),
            retention.previews_days,
        ),
        (
            _Ttl(
                "results",
                re.compile(r"TTL processed_at \+ toIntervalDay\((\d+)\)"),
                f"ALTER TABLE {db}.results MODIFY TTL processed_at + INTERVAL {{days}} DAY",
            ),
            retention.results_days,
        ),
    ]


def current_days(client: ClickHouseClient) -> dict[str, int | None]:
    """The TTL days in force: traces, previews (input), results."""
    queries = _create_queries(client)
    rules = _rules(client.database, Retention(0, 0, 0))
    found = [_days(rule.current, queries.get(rule.table, "")) for rule, _ in rules]
    return {"traces": found[0], "previews": found[1], "results": found[3]}


def apply_retention(client: ClickHouseClient, retention: Retention) -> list[str]:
    """Alter the TTLs that differ from ``retention``; returns the statements run."""
    queries = _create_queries(client)
    ran = []
    for rule, days in _rules(client.database, retention):
        if _days(rule.current, queries.get(rule.table, "")) != days:
            statement = rule.statement.format(days=days)
            client.command(statement)
            ran.append(statement)
    return ran


def _create_queries(client: ClickHouseClient) -> dict[str, str]:
    rows = client.query_rows(
        "SELECT name, create_table_query FROM system.tables WHERE database = {db:String}",
        {"db": client.database},
    )
    return {str(name): str(query) for name, query in rows}


def _days(pattern: re.Pattern[str], query: str) -> int | None:
    match = pattern.search(query)
    if match is None:
        return None
    return int(next(g for g in match.groups() if g is not None))
