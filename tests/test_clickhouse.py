"""Migrations, row builders and redelivery semantics of the ClickHouse sink against a real chdb engine.

Isolation: each test gets its own chdb data path (under tmp_path) and closes its client at teardown.
chdb hosts one engine path per process: a second path cannot be opened while any client on the first is
open, but can be once they are all closed. Owning and closing a path per test therefore isolates tests
completely and never leaves an engine open that would block another test module's own path.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sinks.clickhouse import (
    DEFAULT_MIGRATIONS_DIR,
    RESULT_COLUMNS,
    TRACE_COLUMNS,
    ClickHouseClient,
    MigrationError,
    connect,
    migrate,
    result_row,
    split_statements,
    trace_row,
)

DATABASE = "riverbed_test"
# Recent timestamps: rows already past the table TTL are dropped at insert time.
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def chdb_dsn(tmp_path: Path) -> str:
    return f"chdb://{tmp_path / 'clickhouse'}"


@pytest.fixture
def ch(chdb_dsn: str) -> Iterator[ClickHouseClient]:
    client = connect(chdb_dsn, DATABASE)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def migrated(ch: ClickHouseClient) -> ClickHouseClient:
    migrate(ch)
    return ch


@pytest.fixture
def migrations_copy(tmp_path: Path) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(DEFAULT_MIGRATIONS_DIR, target)
    return target


SHIPPED_MIGRATIONS = [
    "0001_traces",
    "0002_results",
    "0003_trace_attempt_columns",
    "0004_trace_previews",
    "0005_results_redaction",
    "0006_rollup_views",
    "0007_evaluations",
    "0008_views_unpriced_and_tenant",
    "0009_results_review",
    "0010_traces_ingested_default",
    "0011_traces_by_event_day",
    "0012_views_partition_local_final",
]


def trace_record(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "trace_id": "evt-1:classify:v3:1",
        "event_id": "evt-1",
        "tenant_id": "acme",
        "workflow": "ticket",
        "workflow_version": "v3",
        "step": "classify",
        "task": "intent",
        "attempt": 1,
        "call_attempt": 2,
        "fell_back": True,
        "route": "local/banking77-intent",
        "breaker_state": "half_open",
        "gen_ai_operation_name": "classify",
        "gen_ai_provider_name": "local",
        "gen_ai_request_model": "banking77-intent",
        "gen_ai_response_model": "banking77-intent@2",
        "gen_ai_usage_input_tokens": 120,
        "gen_ai_usage_output_tokens": 3,
        "gen_ai_usage_cache_read_input_tokens": 100,
        "gen_ai_usage_cache_creation_input_tokens": 7,
        "prompt_version": "p1",
        "latency_ms": 12.5,
        "cost_usd": Decimal("0.000123456"),
        "price_version": "2026-01",
        "cache_status": "miss",
        "status": "ok",
        "error_class": None,
        "error_message": None,
        "input_preview": "card [CARD] was charged twice",
        "output_preview": "card_payment_not_recognised (0.912)",
        "redaction_count": 1,
        "started_at": NOW - timedelta(minutes=5, microseconds=-123456),
        "event_time": NOW - timedelta(minutes=6, microseconds=-654321),
    }
    record.update(overrides)
    return record


def tables(ch: ClickHouseClient) -> set[str]:
    rows = ch.query_rows("SELECT name FROM system.tables WHERE database = {db:String}", {"db": ch.database})
    return {row[0] for row in rows}


def insert_traces(ch: ClickHouseClient, *rows: tuple[Any, ...]) -> None:
    ch.insert("traces", list(rows), TRACE_COLUMNS)


# ----------------------------------------------------------------------------------------- migrations


def test_migrate_applies_every_file_once(ch: ClickHouseClient) -> None:
    assert migrate(ch) == SHIPPED_MIGRATIONS
    assert {"traces", "results", "schema_migrations"} <= tables(ch)
    recorded = dict(ch.query_rows("SELECT version, checksum FROM schema_migrations"))
    expected = {
        path.stem: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(DEFAULT_MIGRATIONS_DIR.glob("*.sql"))
    }
    assert recorded == expected

    assert migrate(ch) == []
    assert ch.query_scalar("SELECT count() FROM schema_migrations") == len(expected)


def test_migrations_survive_reopening_the_path(chdb_dsn: str) -> None:
    with connect(chdb_dsn, DATABASE) as first:
        assert migrate(first) == SHIPPED_MIGRATIONS
        insert_traces(first, trace_row(trace_record(), NOW))
    with connect(chdb_dsn, DATABASE) as again:
        assert migrate(again) == []
        assert again.query_scalar("SELECT count() FROM traces") == 1


def test_migrate_applies_only_new_files_in_order(ch: ClickHouseClient, migrations_copy: Path) -> None:
    migrate(ch, migrations_copy)
    second = "CREATE TABLE IF NOT EXISTS {db}.b (x UInt8) ENGINE = Log"
    (migrations_copy / "0091_second.sql").write_text(second)
    (migrations_copy / "0090_first.sql").write_text(
        "-- two statements; the semicolon in this comment and in the string must not split\n"
        "CREATE TABLE IF NOT EXISTS {db}.a (x String DEFAULT 'a;b') ENGINE = Log;\n"
        "INSERT INTO {db}.a (x) VALUES ('c;d');\n"
    )
    (migrations_copy / "README.md").write_text("not a migration")

    assert migrate(ch, migrations_copy) == ["0090_first", "0091_second"]
    assert ch.query_rows("SELECT x FROM a") == [("c;d",)]
    assert {"a", "b"} <= tables(ch)


def test_traces_rebuild_keeps_rows_and_derives_the_new_columns(
    ch: ClickHouseClient, migrations_copy: Path
) -> None:
    """0011 moves existing traces to event-day partitions: rows written under 0010 survive (one per
    trace after FINAL), take started_at as their event time, and get fell_back from their routes."""
    rebuild = migrations_copy / "0011_traces_by_event_day.sql"
    rebuild_sql = rebuild.read_text()
    rebuild.unlink()
    migrate(ch, migrations_copy)
    old_columns = [c for c in TRACE_COLUMNS if c not in ("fell_back", "event_time")]

    def old_row(event: str, call: int, route: str, ingested: datetime) -> tuple[Any, ...]:
        record = trace_record(trace_id=f"{event}-{call}", event_id=event, call_attempt=call, route=route)
        values = dict(zip(TRACE_COLUMNS, trace_row(record, ingested), strict=True))
        return tuple(values[c] for c in old_columns)

    rows = [
        # timeout, retry on the same route, then the fallback answers
        old_row("e1", 1, "openai/a", NOW),
        old_row("e1", 2, "openai/a", NOW),
        old_row("e1", 3, "anthropic/b", NOW),
        # two hops: only the first one is the invocation's fallback
        old_row("e2", 1, "openai/a", NOW),
        old_row("e2", 2, "anthropic/b", NOW),
        old_row("e2", 3, "local/c", NOW),
        old_row("e3", 1, "local/c", NOW),
    ]
    ch.insert("traces", rows, old_columns)
    ch.insert("traces", [old_row("e2", 2, "anthropic/b", NOW + timedelta(seconds=1))], old_columns)

    rebuild.write_text(rebuild_sql)
    assert migrate(ch, migrations_copy) == ["0011_traces_by_event_day"]

    partition_key, sorting_key = ch.query_rows(
        "SELECT partition_key, sorting_key FROM system.tables "
        "WHERE database = {db:String} AND name = 'traces'",
        {"db": ch.database},
    )[0]
    assert partition_key == "toYYYYMMDD(event_time)"
    assert sorting_key.startswith("tenant_id, toStartOfHour(event_time)")
    assert "traces_0011" not in tables(ch)
    got = ch.query_rows(
        "SELECT trace_id, fell_back, event_time = started_at FROM traces FINAL ORDER BY trace_id"
    )
    assert got == [
        ("e1-1", False, True),
        ("e1-2", False, True),
        ("e1-3", True, True),
        ("e2-1", False, True),
        ("e2-2", True, True),
        ("e2-3", False, True),
        ("e3-1", False, True),
    ]
    assert ch.query_scalar("SELECT max(ingested_at) FROM traces WHERE trace_id = 'e2-2'") == NOW + timedelta(
        seconds=1
    )


def test_migrate_refuses_an_edited_applied_migration(ch: ClickHouseClient, migrations_copy: Path) -> None:
    migrate(ch, migrations_copy)
    edited = migrations_copy / "0001_traces.sql"
    edited.write_text(edited.read_text() + "\n-- harmless looking edit\n")
    (migrations_copy / "0090_new.sql").write_text("CREATE TABLE {db}.new_table (x UInt8) ENGINE = Log")

    with pytest.raises(MigrationError, match=r"0001_traces\.sql.*checksum"):
        migrate(ch, migrations_copy)
    # refused before applying anything pending
    assert "new_table" not in tables(ch)
    assert ch.query_scalar("SELECT count() FROM schema_migrations") == len(
        list(DEFAULT_MIGRATIONS_DIR.glob("*.sql"))
    )


def test_migrate_refuses_duplicate_numbers(ch: ClickHouseClient, migrations_copy: Path) -> None:
    (migrations_copy / "0002_other.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match="share number 0002"):
        migrate(ch, migrations_copy)


def test_migrations_use_their_own_database(chdb_dsn: str) -> None:
    with connect(chdb_dsn, "tenant_a") as a, connect(chdb_dsn, "tenant_b") as b:
        assert migrate(a) == SHIPPED_MIGRATIONS
        insert_traces(a, trace_row(trace_record(), NOW))
        assert "traces" not in tables(b)
        assert migrate(b) == SHIPPED_MIGRATIONS
        assert b.query_scalar("SELECT count() FROM traces") == 0
        assert a.query_scalar("SELECT count() FROM traces") == 1


def test_split_statements_ignores_semicolons_in_strings_and_comments() -> None:
    sql = "/* a; b */ SELECT 'x;y', 'it\\'s;' ; -- c;d\n SELECT 2;\n\n"
    assert split_statements(sql) == ["SELECT 'x;y', 'it\\'s;'", "SELECT 2"]


def test_connect_rejects_unsafe_database_names(chdb_dsn: str) -> None:
    with pytest.raises(ValueError, match="database name"):
        connect(chdb_dsn, "x`; DROP DATABASE y")


# --------------------------------------------------------------------------------------------- traces


def test_trace_row_follows_column_order() -> None:
    row = trace_row(trace_record(started_at=datetime(2026, 1, 2, 3, 4, 5, 6)), NOW)
    assert len(row) == len(TRACE_COLUMNS)
    values = dict(zip(TRACE_COLUMNS, row, strict=True))
    assert values["trace_id"] == "evt-1:classify:v3:1"
    assert values["cost_usd"] == Decimal("0.000123456")
    assert values["started_at"] == datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)  # naive means UTC
    assert values["ingested_at"] == NOW


def test_redelivered_trace_collapses_to_newest_with_final(migrated: ClickHouseClient) -> None:
    ch = migrated
    ch.command("SYSTEM STOP MERGES traces")  # keep the parts apart so the raw count is deterministic
    first = trace_record(latency_ms=10.0)
    insert_traces(ch, trace_row(first, NOW))
    insert_traces(ch, trace_row(trace_record(latency_ms=20.0), NOW + timedelta(seconds=2)))
    # a stale copy arriving last must not win: the version column decides, not insert order
    insert_traces(ch, trace_row(trace_record(latency_ms=5.0), NOW + timedelta(seconds=1)))
    # a retry is a different attempt, hence a different trace_id: it must survive
    retry = trace_record(trace_id="evt-1:classify:v3:2", attempt=2, latency_ms=30.0)
    insert_traces(ch, trace_row(retry, NOW))

    assert ch.query_scalar("SELECT count() FROM traces") == 4
    rows = ch.query_rows("SELECT trace_id, latency_ms, ingested_at FROM traces FINAL ORDER BY trace_id")
    assert rows == [
        ("evt-1:classify:v3:1", 20.0, NOW + timedelta(seconds=2)),
        ("evt-1:classify:v3:2", 30.0, NOW),
    ]


def test_trace_round_trip_keeps_types_and_nulls(migrated: ClickHouseClient) -> None:
    ch = migrated
    started = NOW - timedelta(seconds=30, microseconds=-654321)
    priced = trace_record(started_at=started)
    unpriced = trace_record(
        trace_id="evt-2:summarize:v3:1",
        event_id="evt-2",
        cost_usd=None,
        status="error",
        error_class="TimeoutError",
        gen_ai_usage_input_tokens=2**40,
    )
    insert_traces(ch, trace_row(priced, NOW), trace_row(unpriced, NOW))

    names = ", ".join(TRACE_COLUMNS)
    rows = ch.query_rows(f"SELECT {names} FROM traces FINAL ORDER BY trace_id")
    got = [dict(zip(TRACE_COLUMNS, row, strict=True)) for row in rows]
    assert got[0] | {"ingested_at": None} == priced | {"ingested_at": None}
    assert got[0]["started_at"] == started and got[0]["started_at"].microsecond == 654321
    assert isinstance(got[0]["cost_usd"], Decimal)
    assert got[1]["cost_usd"] is None
    assert got[1]["error_class"] == "TimeoutError"
    assert got[1]["gen_ai_usage_input_tokens"] == 2**40
    assert ch.query_scalar("SELECT sum(cost_usd) FROM traces FINAL") == Decimal("0.000123456")
    assert ch.query_scalar("SELECT countIf(cost_usd IS NULL) FROM traces FINAL") == 1


# -------------------------------------------------------------------------------------------- results


def ticket_record() -> dict[str, Any]:
    return {
        "tenant_id": "acme",
        "ticket_id": "T-42",
        "causation_id": "evt-created-42",
        "workflow_version": "v3",
        "models": ["local/banking77-intent", "local/minilm"],
        "intent": "card_arrival",
        "intent_confidence": 0.91,
        "priority": "high",
        "entities": [
            {"label": "ORG", "text": "Acme Bank", "start": 0, "end": 9},
            {"label": "DATE", "text": "Monday", "start": 20, "end": 26},
        ],
        "similar": [
            {"point_id": "p1", "kind": "ticket", "source_id": "T-7", "score": 0.8},
            {"point_id": "p2", "kind": "document_chunk", "source_id": "D-1", "score": 0.7},
            {"point_id": "p3", "kind": "document_chunk", "source_id": "D-1", "score": 0.6},
        ],
        "summary": "Card has not arrived.",
        "processed_at": NOW - timedelta(seconds=1, microseconds=-250000),
    }


def document_record() -> dict[str, Any]:
    return {
        "tenant_id": "acme",
        "document_id": "D-1",
        "causation_id": "evt-uploaded-1",
        "workflow_version": "v2",
        "models": ["local/minilm"],
        "title": None,
        "content_type": "application/pdf",
        "text_chars": 5000,
        "chunk_count": 7,
        "labels": [{"name": "policy", "score": 0.75}, {"name": "cards", "score": 0.5}],
        "entities": [],
        "summary": "Card policy.",
        "vector_point_ids": ["a", "b"],
        "processed_at": NOW,
    }


def test_results_round_trip(migrated: ClickHouseClient) -> None:
    ch = migrated
    held = {"x-riverbed-final": "false", "x-riverbed-review-reasons": "low_confidence<0.5"}
    ticket = result_row("ticket.triaged.v1", "evt-triaged-42", ticket_record(), NOW, headers=held)
    document = result_row("document.enriched.v1", "evt-enriched-1", document_record(), NOW)
    assert len(ticket) == len(document) == len(RESULT_COLUMNS)
    ch.insert("results", [ticket, document], RESULT_COLUMNS)

    names = ", ".join(RESULT_COLUMNS)
    rows = ch.query_rows(f"SELECT {names} FROM results FINAL ORDER BY workflow")
    doc, tic = (dict(zip(RESULT_COLUMNS, row, strict=True)) for row in rows)
    assert tic == {
        "event_id": "evt-triaged-42",
        "causation_id": "evt-created-42",
        "tenant_id": "acme",
        "workflow": "ticket",
        "workflow_version": "v3",
        "subject_id": "T-42",
        "models": ["local/banking77-intent", "local/minilm"],
        "labels": ["card_arrival"],
        "label_scores": [0.91],
        "priority": "high",
        "entity_labels": ["ORG", "DATE"],
        "entity_texts": ["Acme Bank", "Monday"],
        "summary": "Card has not arrived.",
        "similar_ids": ["T-7", "D-1"],
        "chunk_count": 0,
        "redaction_count": 0,
        "final": 0,
        "review_reasons": ["low_confidence<0.5"],
        "processed_at": NOW - timedelta(seconds=1, microseconds=-250000),
        "ingested_at": NOW,
    }
    assert doc["workflow"] == "document" and doc["subject_id"] == "D-1"
    assert doc["labels"] == ["policy", "cards"] and doc["label_scores"] == [0.75, 0.5]
    assert doc["priority"] == "" and doc["similar_ids"] == [] and doc["entity_labels"] == []
    assert doc["chunk_count"] == 7
    assert (doc["final"], doc["review_reasons"]) == (1, [])  # no headers: presented as final
    assert doc["processed_at"] == NOW


def test_redelivered_result_replaces_itself(migrated: ClickHouseClient) -> None:
    ch = migrated
    ch.command("SYSTEM STOP MERGES results")
    old = ticket_record() | {"priority": "normal"}
    ch.insert("results", [result_row("ticket.triaged.v1", "evt-9", old, NOW)], RESULT_COLUMNS)
    later = NOW + timedelta(milliseconds=5)
    ch.insert("results", [result_row("ticket.triaged.v1", "evt-9", ticket_record(), later)], RESULT_COLUMNS)
    assert ch.query_scalar("SELECT count() FROM results") == 2
    assert ch.query_rows("SELECT priority, ingested_at FROM results FINAL") == [("high", later)]


def test_result_row_rejects_unknown_topic() -> None:
    with pytest.raises(ValueError, match=r"ticket\.created\.v1"):
        result_row("ticket.created.v1", "e", ticket_record(), NOW)


# --------------------------------------------------------------------------------------------- client


def test_one_client_is_safe_to_share_between_threads(migrated: ClickHouseClient) -> None:
    ch = migrated
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for batch in range(10):
                rows = [trace_row(trace_record(trace_id=f"w{worker}-b{batch}-{i}"), NOW) for i in range(20)]
                ch.insert("traces", rows, TRACE_COLUMNS)
                ch.query_scalar("SELECT count() FROM traces")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert ch.query_scalar("SELECT uniqExact(trace_id) FROM traces") == 8 * 10 * 20


def test_query_scalar_is_none_without_rows_and_close_is_idempotent(chdb_dsn: str) -> None:
    client = connect(chdb_dsn, DATABASE)
    assert client.query_scalar("SELECT 1 WHERE 0") is None
    assert client.query_scalar("SELECT {n:UInt8} + 1", {"n": 41}) == 42
    client.insert("nowhere", [], ("x",))  # empty batch: no round trip, so no missing-table error
    client.close()
    client.close()
    assert client.closed


def test_stored_results_are_pii_masked_and_counted(migrated: ClickHouseClient) -> None:
    from gateway.redact import Redactor

    record = ticket_record() | {
        "entities": [
            {"label": "EMAIL", "text": "jane@example.com", "start": 0, "end": 16},
            {"label": "ORG", "text": "Acme Bank", "start": 20, "end": 29},
            {"label": "MONEY", "text": "£40 to 4111 1111 1111 1111", "start": 30, "end": 50},
        ],
        "summary": "Jane (jane@example.com, EMP-123456) was charged twice.",
    }
    row = result_row("ticket.triaged.v1", "evt-pii", record, NOW, Redactor({"employee_id": r"EMP-\d{6}"}))
    values = dict(zip(RESULT_COLUMNS, row, strict=True))
    assert values["entity_texts"] == ["[EMAIL]", "Acme Bank", "£40 to [CARD]"]
    assert values["summary"] == "Jane ([EMAIL], [EMPLOYEE_ID]) was charged twice."
    assert values["redaction_count"] == 4
    migrated.insert("results", [row], RESULT_COLUMNS)
    stored = migrated.query_rows("SELECT summary, entity_texts FROM results WHERE event_id = 'evt-pii'")
    assert "jane@example.com" not in repr(stored) and "4111" not in repr(stored)


def test_retention_is_configuration_applied_only_when_it_changes(ch: ClickHouseClient) -> None:
    from sinks.retention import Retention, apply_retention, current_days

    migrate(ch)
    assert current_days(ch) == {"traces": 180, "previews": 30, "results": 365}  # the migrations' defaults
    assert apply_retention(ch, Retention(180, 30, 365)) == []
    ran = apply_retention(ch, Retention(90, 7, 400))
    assert len(ran) == 4
    assert current_days(ch) == {"traces": 90, "previews": 7, "results": 400}
    assert apply_retention(ch, Retention(90, 7, 400)) == []
    # a row older than the traces TTL is dropped on insert/merge; one inside it stays
    insert_traces(ch, trace_row(trace_record(trace_id="old", started_at=NOW - timedelta(days=120)), NOW))
    insert_traces(ch, trace_row(trace_record(trace_id="new", started_at=NOW - timedelta(days=60)), NOW))
    ch.command("OPTIMIZE TABLE traces FINAL")
    assert [r[0] for r in ch.query_rows("SELECT trace_id FROM traces ORDER BY trace_id")] == ["new"]


def test_evaluation_scores_replace_on_rewrite_and_compare_by_version(migrated: ClickHouseClient) -> None:
    from sinks.evaluations import Score, latest_scores, write_scores

    def scores(run: str, version: str, accuracy: float, at: datetime) -> list[Score]:
        common = {"run_id": run, "dataset": "banking77", "workflow": "ticket", "workflow_version": version}
        return [
            Score(
                **common, step="classify", metric="accuracy", value=accuracy, support=3080, evaluated_at=at
            ),
            Score(
                **common,
                step="classify",
                metric="f1",
                label="card_arrival",
                value=0.9,
                support=40,
                evaluated_at=at,
            ),
            Score(
                **common,
                step="classify",
                metric="correct",
                event_id="e1",
                value=1.0,
                support=1,
                evaluated_at=at,
                details={"expected": "card_arrival", "got": "card_arrival"},
            ),
        ]

    write_scores(migrated, scores("r1", "v1", 0.93, NOW - timedelta(hours=2)))
    write_scores(migrated, scores("r2", "v2", 0.94, NOW - timedelta(hours=1)))
    write_scores(migrated, scores("r2", "v2", 0.95, NOW - timedelta(hours=1)))  # the same run, rescored
    assert migrated.query_scalar("SELECT count() FROM evaluations FINAL") == 6
    latest = latest_scores(migrated, "banking77", "ticket")
    assert latest[("v1", "classify", "accuracy", "")] == 0.93
    assert latest[("v2", "classify", "accuracy", "")] == 0.95
    assert ("v2", "classify", "correct", "") not in latest  # per-event rows are not aggregates
    detail = migrated.query_scalar(
        "SELECT JSONExtractString(details, 'expected') FROM evaluations FINAL "
        "WHERE event_id = 'e1' AND run_id = 'r1'"
    )
    assert detail == "card_arrival"
