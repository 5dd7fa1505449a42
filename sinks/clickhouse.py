"""ClickHouse access for the trace and result sinks, through clickhouse-connect only.

Why this module exists:

* One code path for both deployments. The embedded default DSN (``chdb:///abs/path``) runs the ClickHouse
  engine in-process; production uses an HTTP DSN. Everything above this module sees one small
  ``ClickHouseClient`` and never learns which one it talks to.
* One lock per client. A shared clickhouse-connect HTTP client refuses concurrent queries in its session,
  and a chdb handle must not be re-entered while it is busy, so every call is serialised here. Callers may
  share one client between threads.
* Timestamps are always UTC. Naive datetimes are read by clickhouse-connect as *host-local* time on insert,
  so the row builders attach UTC to naive values, and the client is opened with ``tz_mode="aware"`` so
  reads come back as timezone-aware UTC datetimes.
* Schema changes are plain SQL files (``infra/clickhouse/migrations/NNNN_name.sql`` with a ``{db}``
  placeholder) applied in order and recorded with a checksum, so an edited, already-applied migration is
  refused loudly instead of silently diverging from what the database holds.
* Row builders turn decoded Avro records (``ai.traces.v1``, ``ticket.triaged.v1``,
  ``document.enriched.v1``) into tuples in a fixed column order, so the sinks can batch plain tuples.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from gateway.redact import Redactor
from streams.config import PROJECT_ROOT
from streams.envelope import FINAL_HEADER, REVIEW_REASONS_HEADER

__all__ = [
    "DEFAULT_MIGRATIONS_DIR",
    "RESULT_COLUMNS",
    "TRACE_AVRO_COLUMNS",
    "TRACE_COLUMNS",
    "ClickHouseClient",
    "Migration",
    "MigrationError",
    "applied_migrations",
    "connect",
    "load_migrations",
    "migrate",
    "result_row",
    "split_statements",
    "trace_row",
]

DEFAULT_MIGRATIONS_DIR: Final[Path] = PROJECT_ROOT / "infra" / "clickhouse" / "migrations"
MIGRATIONS_TABLE: Final[str] = "schema_migrations"

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MIGRATION_FILE = re.compile(r"^(\d{4})_[A-Za-z0-9_]+\.sql$")
# Single-quoted strings (with backslash escapes), comments, statement separators, and everything else.
_SQL_TOKEN = re.compile(r"'(?:[^'\\]|\\.)*'|--[^\n]*|/\*.*?\*/|;|[^';\-/]+|.", re.DOTALL)


# --------------------------------------------------------------------------------------------- client


class ClickHouseClient:
    """A clickhouse-connect client bound to one database, with every call serialised by a lock."""

    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._database = database
        self._lock = threading.Lock()
        self._closed = False

    @property
    def database(self) -> str:
        """The database unqualified table names resolve to."""
        return self._database

    @property
    def closed(self) -> bool:
        return self._closed

    def command(self, sql: str) -> None:
        """Run one statement that returns no rows (DDL, OPTIMIZE, ...)."""
        with self._lock:
            self._client.command(sql)

    def query_rows(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a SELECT; ``parameters`` bind server-side ``{name:Type}`` placeholders."""
        with self._lock:
            result = self._client.query(sql, parameters=dict(parameters) if parameters else None)
            return [tuple(row) for row in result.result_rows]

    def query_dicts(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a SELECT; one {column name: value} per row."""
        with self._lock:
            result = self._client.query(sql, parameters=dict(parameters) if parameters else None)
            return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    def query_scalar(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        """First column of the first row, or None when the query returns no rows."""
        rows = self.query_rows(sql, parameters)
        return rows[0][0] if rows else None

    def insert(self, table: str, rows: Sequence[Sequence[Any]], column_names: Sequence[str]) -> None:
        """Insert row-oriented data; an empty ``rows`` is a no-op."""
        if not rows:
            return
        with self._lock:
            self._client.insert(table, data=rows, column_names=list(column_names))

    def insert_avro(self, table: str, column_names: Sequence[str], container: bytes) -> None:
        """Insert an Avro object container file (``FORMAT Avro``); ClickHouse decodes it and fills
        the columns not named from their defaults."""
        with self._lock:
            self._client.raw_insert(
                table, column_names=list(column_names), insert_block=container, fmt="Avro"
            )

    def close(self) -> None:
        """Release the connection; for chdb this lets the process open a different data path. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._client.close()

    def __enter__(self) -> ClickHouseClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _check_identifier(name: str, what: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{what} {name!r} must match {_IDENTIFIER.pattern}")
    return name


def connect(dsn: str, database: str) -> ClickHouseClient:
    """Open ``dsn`` (``chdb:///abs/path`` or ``http://user:pw@host:8123``), create ``database`` if missing
    and make it the default for unqualified table names.

    chdb hosts one engine per process: clients on the same path may coexist, but a different path can
    only be opened after every client on the previous one is closed.
    """
    _check_identifier(database, "database name")
    raw = clickhouse_connect.get_client(dsn=dsn, tz_mode="aware")
    try:
        raw.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        raw.database = database
    except BaseException:
        raw.close()
        raise
    return ClickHouseClient(raw, database)


# ----------------------------------------------------------------------------------------- migrations


class MigrationError(RuntimeError):
    """The migrations on disk and the ones recorded in the database disagree."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: str  # file stem, e.g. "0001_traces"
    path: Path
    sql: str
    checksum: str  # sha256 of the file bytes, before {db} substitution

    def statements(self, database: str) -> list[str]:
        return split_statements(self.sql.replace("{db}", f"`{database}`"))


def split_statements(sql: str) -> list[str]:
    """Split a script on top-level ``;``, dropping comments; semicolons inside string literals survive."""
    statements: list[str] = []
    current: list[str] = []
    for token in _SQL_TOKEN.findall(sql):
        if token.startswith(("--", "/*")):
            current.append(" ")
        elif token == ";":
            statements.append("".join(current))
            current = []
        else:
            current.append(token)
    statements.append("".join(current))
    return [stmt.strip() for stmt in statements if stmt.strip()]


def load_migrations(migrations_dir: Path = DEFAULT_MIGRATIONS_DIR) -> list[Migration]:
    """All ``NNNN_name.sql`` files in version order; other files are ignored, duplicate numbers refused."""
    found: list[Migration] = []
    seen: dict[str, Path] = {}
    for path in sorted(migrations_dir.glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if match is None:
            continue
        number = match.group(1)
        if number in seen:
            raise MigrationError(f"migrations {seen[number].name} and {path.name} share number {number}")
        seen[number] = path
        data = path.read_bytes()
        found.append(Migration(path.stem, path, data.decode("utf-8"), hashlib.sha256(data).hexdigest()))
    return found


def _ensure_migrations_table(client: ClickHouseClient) -> None:
    client.command(
        f"CREATE TABLE IF NOT EXISTS `{client.database}`.{MIGRATIONS_TABLE} "
        "(version String, applied_at DateTime64(3, 'UTC'), checksum String) "
        "ENGINE = ReplacingMergeTree(applied_at) ORDER BY version"
    )


def applied_migrations(client: ClickHouseClient) -> dict[str, str]:
    """version -> checksum of every migration recorded in ``client.database``."""
    _ensure_migrations_table(client)
    rows = client.query_rows(
        f"SELECT version, argMax(checksum, applied_at) FROM `{client.database}`.{MIGRATIONS_TABLE} "
        "GROUP BY version"
    )
    return {str(version): str(checksum) for version, checksum in rows}


def migrate(client: ClickHouseClient, migrations_dir: Path = DEFAULT_MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations in order and return the versions applied by this call.

    Idempotent: a second call applies nothing. Raises MigrationError, before applying anything, when a
    recorded migration's file changed (add a new migration instead of editing an applied one). A file is
    recorded only after all its statements succeeded, so write them with IF NOT EXISTS to make a retry
    after a partial failure safe. Concurrent migrate() calls against one server are not coordinated.
    """
    migrations = load_migrations(migrations_dir)
    applied = applied_migrations(client)
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded != migration.checksum:
            raise MigrationError(
                f"migration {migration.path.name} was applied to database {client.database!r} with "
                f"checksum {recorded}, but the file now has checksum {migration.checksum}; applied "
                "migrations must not be edited, add a new migration instead"
            )
    done: list[str] = []
    for migration in migrations:
        if migration.version in applied:
            continue
        for statement in migration.statements(client.database):
            client.command(statement)
        client.insert(
            f"`{client.database}`.{MIGRATIONS_TABLE}",
            [(migration.version, datetime.now(UTC), migration.checksum)],
            ("version", "applied_at", "checksum"),
        )
        done.append(migration.version)
    return done


# ----------------------------------------------------------------------------------------------- rows

TRACE_COLUMNS: Final[tuple[str, ...]] = (
    "trace_id",
    "event_id",
    "tenant_id",
    "workflow",
    "workflow_version",
    "step",
    "task",
    "attempt",
    "call_attempt",
    "fell_back",
    "route",
    "breaker_state",
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
    "gen_ai_usage_input_tokens",
    "gen_ai_usage_output_tokens",
    "gen_ai_usage_cache_read_input_tokens",
    "gen_ai_usage_cache_creation_input_tokens",
    "prompt_version",
    "latency_ms",
    "cost_usd",
    "price_version",
    "cache_status",
    "status",
    "error_class",
    "error_message",
    "input_preview",
    "output_preview",
    "redaction_count",
    "started_at",
    "event_time",
    "ingested_at",
)

RESULT_COLUMNS: Final[tuple[str, ...]] = (
    "event_id",
    "causation_id",
    "tenant_id",
    "workflow",
    "workflow_version",
    "subject_id",
    "models",
    "labels",
    "label_scores",
    "priority",
    "entity_labels",
    "entity_texts",
    "summary",
    "similar_ids",
    "chunk_count",
    "redaction_count",
    "final",
    "review_reasons",
    "processed_at",
    "ingested_at",
)

TRACE_AVRO_COLUMNS: Final[tuple[str, ...]] = tuple(c for c in TRACE_COLUMNS if c != "ingested_at")
"""The trace columns filled straight from an ai.traces.v1 record (same names as its fields)."""

_TRACE_PASSTHROUGH: Final[frozenset[str]] = frozenset(TRACE_COLUMNS) - {
    "attempt",
    "call_attempt",
    "fell_back",
    "route",
    "breaker_state",
    "gen_ai_usage_cache_read_input_tokens",
    "gen_ai_usage_cache_creation_input_tokens",
    "error_message",
    "input_preview",
    "output_preview",
    "redaction_count",
    "gen_ai_usage_input_tokens",
    "gen_ai_usage_output_tokens",
    "latency_ms",
    "cost_usd",
    "error_class",
    "started_at",
    "event_time",
    "ingested_at",
}

_RESULT_WORKFLOWS: Final[Mapping[str, str]] = {
    "ticket.triaged.v1": "ticket",
    "document.enriched.v1": "document",
}


def _utc(value: datetime) -> datetime:
    """Aware UTC datetime; a naive value is taken to be UTC already (never host-local time)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, Decimal):
        return value
    # float -> str -> Decimal keeps the shortest repr (0.1 stays 0.1, not 0.1000000000000000055...)
    return Decimal(str(value))


def trace_row(record: Mapping[str, Any], ingested_at: datetime) -> tuple[Any, ...]:
    """Decoded ai.traces.v1 record -> tuple in TRACE_COLUMNS order."""
    values: dict[str, Any] = {name: record[name] for name in _TRACE_PASSTHROUGH}
    values["attempt"] = int(record["attempt"])
    values["gen_ai_usage_input_tokens"] = int(record["gen_ai_usage_input_tokens"])
    values["gen_ai_usage_output_tokens"] = int(record["gen_ai_usage_output_tokens"])
    values["latency_ms"] = float(record["latency_ms"])
    values["cost_usd"] = _decimal(record.get("cost_usd"))
    values["error_class"] = record.get("error_class")
    # fields added to ai.traces.v1 later carry defaults, so records from older producers still load
    values["call_attempt"] = int(record.get("call_attempt", 1))
    values["route"] = str(record.get("route", ""))
    values["breaker_state"] = str(record.get("breaker_state", "closed"))
    values["gen_ai_usage_cache_read_input_tokens"] = int(
        record.get("gen_ai_usage_cache_read_input_tokens", 0)
    )
    values["gen_ai_usage_cache_creation_input_tokens"] = int(
        record.get("gen_ai_usage_cache_creation_input_tokens", 0)
    )
    values["error_message"] = record.get("error_message")
    values["input_preview"] = str(record.get("input_preview", ""))
    values["output_preview"] = str(record.get("output_preview", ""))
    values["redaction_count"] = int(record.get("redaction_count", 0))
    values["started_at"] = _utc(record["started_at"])
    values["fell_back"] = bool(record.get("fell_back", False))
    values["event_time"] = _utc(record.get("event_time") or record["started_at"])
    values["ingested_at"] = _utc(ingested_at)
    return tuple(values[name] for name in TRACE_COLUMNS)


def _entities(record: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    entities: Sequence[Mapping[str, Any]] = record.get("entities") or ()
    return [str(e["label"]) for e in entities], [str(e["text"]) for e in entities]


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


PII_ENTITY_LABELS: Final[frozenset[str]] = frozenset({"EMAIL", "IBAN", "CARD_REF", "ACCOUNT_REF", "PHONE"})
"""Entities that are personal data by their label: stored as ``[LABEL]`` whatever their text."""


def _masked_outputs(
    labels: list[str], texts: list[str], summary: str, redactor: Redactor | None
) -> tuple[list[str], str, int]:
    if redactor is None:
        return texts, summary, 0
    masked_texts, count = [], 0
    for label, text in zip(labels, texts, strict=True):
        if label in PII_ENTITY_LABELS:
            masked_texts.append(f"[{label}]")
            count += 1
            continue
        masked, found = redactor.redact(text)
        masked_texts.append(masked)
        count += sum(found.values())
    masked_summary, found = redactor.redact(summary)
    return masked_texts, masked_summary, count + sum(found.values())


def result_row(
    topic: str,
    event_id: str,
    record: Mapping[str, Any],
    ingested_at: datetime,
    redactor: Redactor | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[Any, ...]:
    """Decoded result record -> tuple in RESULT_COLUMNS order.

    ticket.triaged.v1: labels = [intent], label_scores = [intent_confidence], similar_ids = the similar
    items' source ids (rank order, de-duplicated), chunk_count = 0.
    document.enriched.v1: labels/label_scores from ``labels``, priority = '', similar_ids = [].
    With a ``redactor``, entity texts and the summary are PII-masked (the stored copy only: the result
    event downstream keeps them) and ``redaction_count`` says how many items were masked.
    """
    workflow = _RESULT_WORKFLOWS.get(topic)
    if workflow is None:
        raise ValueError(
            f"no results mapping for topic {topic!r}; expected one of {sorted(_RESULT_WORKFLOWS)}"
        )
    entity_labels, entity_texts = _entities(record)
    entity_texts, summary, redactions = _masked_outputs(
        entity_labels, entity_texts, str(record["summary"]), redactor
    )
    if workflow == "ticket":
        subject_id = str(record["ticket_id"])
        labels = [str(record["intent"])]
        label_scores = [float(record["intent_confidence"])]
        priority = str(record["priority"])
        similar_ids = _unique(str(item["source_id"]) for item in record.get("similar") or ())
        chunk_count = 0
    else:
        subject_id = str(record["document_id"])
        doc_labels: Sequence[Mapping[str, Any]] = record.get("labels") or ()
        labels = [str(label["name"]) for label in doc_labels]
        label_scores = [float(label["score"]) for label in doc_labels]
        priority = ""
        similar_ids = []
        chunk_count = int(record["chunk_count"])
    values: dict[str, Any] = {
        "event_id": event_id,
        "causation_id": str(record["causation_id"]),
        "tenant_id": str(record["tenant_id"]),
        "workflow": workflow,
        "workflow_version": str(record["workflow_version"]),
        "subject_id": subject_id,
        "models": [str(model) for model in record.get("models") or ()],
        "labels": labels,
        "label_scores": label_scores,
        "priority": priority,
        "entity_labels": entity_labels,
        "entity_texts": entity_texts,
        "summary": summary,
        "similar_ids": similar_ids,
        "chunk_count": chunk_count,
        "redaction_count": redactions,
        "final": 0 if (headers or {}).get(FINAL_HEADER) == "false" else 1,
        "review_reasons": [r for r in (headers or {}).get(REVIEW_REASONS_HEADER, "").split(",") if r],
        "processed_at": _utc(record["processed_at"]),
        "ingested_at": _utc(ingested_at),
    }
    return tuple(values[name] for name in RESULT_COLUMNS)
