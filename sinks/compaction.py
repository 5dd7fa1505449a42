"""Closed days of traces compacted to one part each.

Traces are partitioned by the day of their event (migration 0011), and every copy of a trace lands in
that day's partition. Readers de-duplicate with ``FINAL`` within partitions; ClickHouse reads a
partition that is a single merged part without any merging, so a report over a month costs about
what it would without ``FINAL``, while the open day (the only one still taking inserts) is merged on
read. Background merges alone leave several overlapping parts per day, and ``FINAL`` then merge-sorts
them all on every query.

A day counts as closed an hour after its midnight (UTC), when the events of its last minutes have
been processed. A late trace (a replay, a retry of an old event) adds a part to its closed day; the
next pass compacts that day again. The sink runs a pass every ``trace_compaction_interval_s``;
``riverbed compact`` runs one by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sinks.clickhouse import ClickHouseClient

CLOSE_AFTER = timedelta(hours=1)
"""How long after its midnight (UTC) a day's partition stops expecting traces."""
PARTITION_FORMAT = "%Y%m%d"
"""The partition id of ``toYYYYMMDD(event_time)``."""


@dataclass(frozen=True)
class Compaction:
    partition: str
    parts: int
    rows: int


def closed_partitions(client: ClickHouseClient, now: datetime, table: str = "traces") -> list[Compaction]:
    """Closed days of ``table`` that still have more than one part, or one part fresh from an
    insert (level 0: ClickHouse only skips merging on read for a part that came out of a merge)."""
    cutoff = (now.astimezone(UTC) - CLOSE_AFTER).strftime(PARTITION_FORMAT)
    rows = client.query_rows(
        "SELECT partition_id, count(), sum(rows) FROM system.parts "
        "WHERE active AND database = {db:String} AND table = {table:String} "
        "GROUP BY partition_id HAVING partition_id < {cutoff:String} AND (count() > 1 OR min(level) = 0) "
        "ORDER BY partition_id",
        {"db": client.database, "table": table, "cutoff": cutoff},
    )
    return [Compaction(str(partition), int(parts), int(count)) for partition, parts, count in rows]


def compact_closed_days(
    client: ClickHouseClient, now: datetime | None = None, table: str = "traces", limit: int | None = None
) -> list[Compaction]:
    """Merge each closed day of ``table`` that needs it into one part (``OPTIMIZE ... FINAL``, which
    also drops the replaced copies of redelivered traces); returns what was compacted. With a
    ``limit``, only that many days, the most recent first (the ones read most): the sink bounds
    each pass so a backlog of days (after migration 0011, say) does not hold its inserts for long."""
    todo = closed_partitions(client, now or datetime.now(UTC), table)
    if limit is not None:
        todo = todo[::-1][:limit]
    for item in todo:
        client.command(f"OPTIMIZE TABLE `{client.database}`.`{table}` PARTITION ID '{item.partition}' FINAL")
    return todo
