"""Event-day partitions and their compaction, on the real chdb engine: every copy of a trace shares
one partition (so the report's partition-local FINAL counts it once), and closed days are merged into
one part each while the open day is left alone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sinks.clickhouse import TRACE_COLUMNS, ClickHouseClient, connect, migrate, trace_row
from sinks.compaction import closed_partitions, compact_closed_days
from sinks.report import TRACE_FINAL
from sinks.service import ClickHouseSink
from streams.config import Settings
from tests.conftest import cli, in_subprocess
from tests.test_clickhouse import trace_record

NOW = datetime.now(UTC).replace(microsecond=0)
TODAY = NOW.replace(hour=12, minute=0, second=0)
"""Midday of the current UTC day: an hour past midnight, so yesterday counts as closed."""


@pytest.fixture
def traces_db(tmp_path: Path) -> Iterator[ClickHouseClient]:
    client = connect(f"chdb://{tmp_path / 'clickhouse'}", "compaction_test")
    try:
        migrate(client)
        yield client
    finally:
        client.close()


def hold_background_merges(client: ClickHouseClient) -> None:
    """Parts stay apart until an OPTIMIZE (which ignores these limits) merges them: unlike SYSTEM STOP
    MERGES, which refuses OPTIMIZE too. Without it a background merge can race the pass under test."""
    client.command(
        "ALTER TABLE traces MODIFY SETTING max_bytes_to_merge_at_max_space_in_pool = 1, "
        "max_bytes_to_merge_at_min_space_in_pool = 1"
    )


def insert(client: ClickHouseClient, *records: dict[str, Any], ingested: datetime = NOW) -> None:
    client.insert("traces", [trace_row(r, ingested) for r in records], TRACE_COLUMNS)


def parts(client: ClickHouseClient) -> dict[str, tuple[int, int]]:
    """partition id -> (active parts, lowest part level)"""
    rows = client.query_rows(
        "SELECT partition_id, count(), min(level) FROM system.parts WHERE active AND database = {db:String} "
        "AND table = 'traces' GROUP BY partition_id",
        {"db": client.database},
    )
    return {str(p): (int(n), int(level)) for p, n, level in rows}


def day_id(moment: datetime) -> str:
    return moment.strftime("%Y%m%d")


def test_a_rerun_across_midnight_stays_in_its_event_day_and_counts_once(traces_db: ClickHouseClient) -> None:
    """The re-run's call starts after midnight, but the event's time is the same: one partition,
    so de-duplicating within partitions (what the report does) is exact."""
    event_time = TODAY.replace(hour=0) - timedelta(days=3, seconds=5)  # 23:59:55, four days back
    first = trace_record(event_time=event_time, started_at=event_time + timedelta(seconds=2), latency_ms=10.0)
    rerun = trace_record(
        event_time=event_time, started_at=event_time + timedelta(seconds=40), latency_ms=20.0
    )
    assert first["started_at"].date() != rerun["started_at"].date()
    insert(traces_db, first)
    insert(traces_db, rerun, ingested=NOW + timedelta(seconds=1))

    assert list(parts(traces_db)) == [day_id(event_time)]
    assert traces_db.query_rows(f"SELECT count(), max(latency_ms) FROM traces FINAL {TRACE_FINAL}") == [
        (1, 20.0)
    ]


def test_closed_days_are_merged_to_one_part_and_the_open_day_is_left(traces_db: ClickHouseClient) -> None:
    hold_background_merges(traces_db)
    closed = TODAY - timedelta(days=2)
    one = trace_record(trace_id="a", event_time=closed, started_at=closed, latency_ms=1.0)
    two = trace_record(trace_id="b", event_time=closed, started_at=closed, latency_ms=2.0)
    insert(traces_db, one)
    insert(traces_db, two)
    insert(traces_db, one | {"latency_ms": 3.0}, ingested=NOW + timedelta(seconds=1))  # a redelivered copy
    open_day = [trace_record(trace_id=f"t{i}", event_time=TODAY, started_at=TODAY) for i in range(2)]
    insert(traces_db, open_day[0])
    insert(traces_db, open_day[1])

    todo = closed_partitions(traces_db, TODAY)
    assert [(c.partition, c.parts, c.rows) for c in todo] == [(day_id(closed), 3, 3)]

    done = compact_closed_days(traces_db, TODAY)

    assert [c.partition for c in done] == [day_id(closed)]
    after = parts(traces_db)
    assert after[day_id(closed)][0] == 1 and after[day_id(closed)][1] > 0  # one merged part
    # the merge kept the newest copy: no FINAL needed to count the closed day right
    assert traces_db.query_rows(
        "SELECT trace_id, latency_ms FROM traces WHERE event_time < {t:DateTime64(6)} ORDER BY trace_id",
        {"t": TODAY},
    ) == [("a", 3.0), ("b", 2.0)]
    assert closed_partitions(traces_db, TODAY) == []  # a second pass has nothing to do

    insert(traces_db, trace_record(trace_id="late", event_time=closed, started_at=TODAY))  # a late replay
    assert [c.partition for c in closed_partitions(traces_db, TODAY)] == [day_id(closed)]


def test_a_bounded_pass_compacts_the_most_recent_closed_days_first(traces_db: ClickHouseClient) -> None:
    hold_background_merges(traces_db)
    days = [TODAY - timedelta(days=n) for n in (5, 4, 3)]
    for n, day in enumerate(days):
        for copy in range(2):
            insert(traces_db, trace_record(trace_id=f"d{n}-{copy}", event_time=day, started_at=day))

    first = compact_closed_days(traces_db, TODAY, limit=2)

    assert [c.partition for c in first] == [day_id(days[2]), day_id(days[1])]
    assert [c.partition for c in compact_closed_days(traces_db, TODAY, limit=2)] == [day_id(days[0])]


def test_a_day_is_closed_only_an_hour_after_its_midnight(traces_db: ClickHouseClient) -> None:
    midnight = TODAY.replace(hour=0)
    yesterday = midnight - timedelta(hours=1)
    hold_background_merges(traces_db)
    for trace_id in ("x", "y"):
        insert(traces_db, trace_record(trace_id=trace_id, event_time=yesterday, started_at=yesterday))

    assert closed_partitions(traces_db, midnight + timedelta(minutes=30)) == []
    assert [c.partition for c in closed_partitions(traces_db, midnight + timedelta(hours=1))] == [
        day_id(yesterday)
    ]


def test_the_running_sink_compacts_closed_days_every_interval(broker: Settings) -> None:
    settings = broker.model_copy(
        update={"app_id": "riverbed-compaction-sink", "trace_compaction_interval_s": 0.2}
    )
    closed = datetime.now(UTC) - timedelta(days=2)
    with connect(settings.effective_clickhouse_dsn, "riverbed_compaction_sink") as client:
        migrate(client)
        hold_background_merges(client)
        for trace_id in ("p", "q", "r"):
            insert(client, trace_record(trace_id=trace_id, event_time=closed, started_at=closed))

        async def run_sink() -> ClickHouseSink:
            sink = ClickHouseSink(settings, client)
            task = asyncio.create_task(sink.run())
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while sink.stats.compaction_passes < 2 and loop.time() < deadline and not task.done():
                await asyncio.sleep(0.05)
            sink.stop()
            await asyncio.wait_for(task, 30)
            return sink

        sink = asyncio.run(run_sink())

        assert sink.stats.compaction_passes >= 2  # a pass per interval, from the sink's own loop
        assert sink.stats.compacted_partitions == 1  # the first pass merged the day, later ones had nothing
        assert parts(client)[day_id(closed)][0] == 1
        assert closed_partitions(client, datetime.now(UTC)) == []


def seed_closed_day() -> None:
    """In a child process: two parts in a closed day of the configured database."""
    from streams.config import get_settings

    settings = get_settings()
    with connect(settings.effective_clickhouse_dsn, settings.clickhouse_database) as client:
        migrate(client)
        hold_background_merges(client)
        closed = datetime.now(UTC) - timedelta(days=3)
        for trace_id in ("m", "n"):
            insert(client, trace_record(trace_id=trace_id, event_time=closed, started_at=closed))


def print_parts() -> None:
    from streams.config import get_settings

    settings = get_settings()
    with connect(settings.effective_clickhouse_dsn, settings.clickhouse_database) as client:
        print(parts(client))


def test_compact_command_merges_closed_days(base_settings: Settings, tmp_path: Path) -> None:
    settings = base_settings.model_copy(update={"data_dir": tmp_path / "data"})
    settings.data_dir.mkdir(parents=True)
    in_subprocess(settings, "tests.test_compaction", "seed_closed_day")
    day = day_id(datetime.now(UTC) - timedelta(days=3))

    done = cli(settings, "compact")

    assert done.returncode == 0, done.stderr
    assert f"compacted {day}: 2 parts, 2 rows" in done.stdout, done.stdout
    assert f"'{day}': (1, " in in_subprocess(settings, "tests.test_compaction", "print_parts")
    again = cli(settings, "compact", "--dry-run")
    assert again.returncode == 0 and "already one part" in again.stdout, again.stdout
