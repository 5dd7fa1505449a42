"""The trace sink's fast path: Avro values handed to ClickHouse undecoded (FORMAT Avro).

Real broker, real sink, real chdb. The rows ClickHouse decodes must equal what the Python row
builder makes of the same records, column by column, whether they came one per message or in the
worker's batch messages; an insert holding a value that is not the records its message declares
must fall back to the row path, which stores every good message and rejects the bad one.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from structlog.testing import capture_logs

from agents.outcome import OutboundEvent
from sinks.clickhouse import TRACE_AVRO_COLUMNS, TRACE_COLUMNS, connect, migrate, trace_row
from sinks.service import ClickHouseSink, TraceMessage, insert_chunks
from streams import envelope as env
from streams import trace_batches as tb
from streams.codec import load_schema
from streams.config import Settings
from streams.topics import AI_TRACES
from streams.trace_batches import trace_messages
from tests.conftest import drain_sink, start_sink_group_at_end


def varied_trace(i: int, run_id: str) -> dict[str, Any]:
    return {
        "trace_id": f"{run_id}-{i}",
        "event_id": f"{run_id}-evt-{i // 3}",
        "tenant_id": ["acme", "globex"][i % 2],
        "workflow": "ticket",
        "workflow_version": "ticket-1+banking77-intent@v2",
        "step": ["classify", "extract", "summarize"][i % 3],
        "task": "classify_intent",
        "attempt": 1 + i % 2,
        "call_attempt": 1 + i % 3,
        "fell_back": i % 3 == 1,
        "route": "primary" if i % 4 else "fallback",
        "breaker_state": "closed" if i % 5 else "half_open",
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "openai" if i % 2 else "local",
        "gen_ai_request_model": "gpt-4o-mini",
        "gen_ai_response_model": "gpt-4o-mini-2024-07-18",
        "gen_ai_usage_input_tokens": 2**40 + i,
        "gen_ai_usage_output_tokens": i,
        "gen_ai_usage_cache_read_input_tokens": i % 7,
        "gen_ai_usage_cache_creation_input_tokens": i % 11,
        "prompt_version": "p3",
        "latency_ms": 12.5 + i / 1000,
        "cost_usd": None if i % 3 == 0 else Decimal("0.000000001") * (i * 1_234_567),
        "price_version": "2026-11-23.2",
        "cache_status": "miss",
        "status": "ok" if i % 6 else "error",
        "error_class": None if i % 6 else "ProviderTimeout",
        "error_message": None if i % 6 else "timed out after 30 s — café",
        "input_preview": f"Where is my card? [EMAIL] #{i} — €20",
        "output_preview": "lost_or_stolen_card",
        "redaction_count": i % 4,
        "started_at": datetime(2026, 11, 20, 9, 30, tzinfo=UTC) + timedelta(microseconds=123_457 * i),
        "event_time": datetime(2026, 11, 19, 23, 59, tzinfo=UTC) + timedelta(microseconds=98_765 * i),
    }


async def produce(
    settings: Settings, values: list[tuple[bytes, list[tuple[str, bytes]]]], compression: str | None = None
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, compression_type=compression)
    await producer.start()
    try:
        for value, headers in values:
            await producer.send(AI_TRACES, value, key=b"k", headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


def test_the_schema_fields_are_the_columns_the_avro_insert_names() -> None:
    assert tuple(f["name"] for f in load_schema(AI_TRACES)["fields"]) == TRACE_AVRO_COLUMNS
    assert set(TRACE_COLUMNS) - set(TRACE_AVRO_COLUMNS) == {"ingested_at"}


def assert_stored_as_the_row_builder_makes_them(
    client: Any, run_id: str, records: list[dict[str, Any]]
) -> None:
    columns = [c for c in TRACE_COLUMNS if c != "ingested_at"]
    stored = {
        row[0]: row
        for row in client.query_rows(
            f"SELECT {', '.join(columns)} FROM traces FINAL WHERE trace_id LIKE {{p:String}}",
            {"p": f"{run_id}-%"},
        )
    }
    assert len(stored) == len(records)
    keep = [TRACE_COLUMNS.index(c) for c in columns]
    for record in records:
        expected = trace_row(record, datetime.now(UTC))
        assert stored[record["trace_id"]] == tuple(expected[i] for i in keep), record["trace_id"]


def as_sent(message: OutboundEvent) -> tuple[bytes, list[tuple[str, bytes]]]:
    return message.value, message.headers


@pytest.mark.parametrize("codec", ["none", "lz4", "zstd", "gzip", "snappy"])
def test_clickhouse_decodes_traces_exactly_like_the_row_builder(broker: Settings, codec: str) -> None:
    """Whichever codec a producer chose (the worker's is ``producer_compression``, lz4 by default;
    the sink cannot read snappy, lz4 or zstd batches without cramjam installed), and whether the
    traces came in the worker's batch messages (streams/trace_batches.py: one per tenant here) or
    one per message, as before batches existed: both land in the same inserts."""
    run_id = f"avro-{codec}-{datetime.now(UTC).timestamp():.0f}"
    records = [varied_trace(i, run_id) for i in range(120)]
    singles = [env.encode_event(AI_TRACES, r)[:2] for r in records[:60]]
    batches = [as_sent(m) for m in trace_messages(records[60:])]
    assert len(batches) == 2
    compression = broker.model_copy(update={"producer_compression": codec}).producer_compression_type
    asyncio.run(produce(broker, [*singles, *batches], compression))
    settings = broker.model_copy(update={"app_id": f"riverbed-avro-sink-{codec}", "sink_batch_rows": 50})
    with connect(settings.effective_clickhouse_dsn, "riverbed_avro") as client:
        migrate(client)
        sink = ClickHouseSink(settings, client)
        drain_sink(sink)
        assert sink.stats.rejected[AI_TRACES] == 0
        assert_stored_as_the_row_builder_makes_them(client, run_id, records)
        ingested = client.query_scalar(
            "SELECT min(ingested_at) > now64(3) - INTERVAL 10 MINUTE FROM traces "
            "WHERE trace_id LIKE {p:String}",
            {"p": f"{run_id}-%"},
        )
        assert ingested == 1  # stamped by ClickHouse's column default
        # the rollup views fire for rows the Avro insert wrote
        tokens = client.query_scalar(
            "SELECT sum(output_tokens) FROM cost_daily WHERE day = '2026-11-20' AND tenant_id = 'globex'"
        )
        assert tokens >= sum(r["gen_ai_usage_output_tokens"] for r in records if r["tenant_id"] == "globex")


def test_inserts_keep_to_the_batch_size_whatever_the_messages_hold() -> None:
    """One fetch can hand the sink thousands of batch messages; each insert still holds at most
    ``sink_batch_rows`` traces, unless one message alone holds more."""
    a, b, c, d, e, f = (
        TraceMessage(value, traces, 0, offset)
        for offset, (value, traces) in enumerate(
            [(b"a", 40), (b"b", 40), (b"c", 30), (b"d", 250), (b"e", 1), (b"f", 99)]
        )
    )
    messages = [a, b, c, d, e, f]
    chunks = list(insert_chunks(messages, 100))
    assert chunks == [([a, b], 80), ([c], 30), ([d], 250), ([e, f], 100)]
    assert [m for chunk, _ in chunks for m in chunk] == messages
    assert list(insert_chunks([], 100)) == []


def drained_trace_ids(
    broker: Settings, name: str, run_id: str, messages: list[tuple[bytes, list[tuple[str, bytes]]]]
) -> tuple[set[str], ClickHouseSink]:
    """Produce ``messages``, drain them with a sink of its own into a database of its own, and
    return the run's trace ids that landed, with the sink (for its counters)."""
    asyncio.run(produce(broker, messages))
    settings = broker.model_copy(update={"app_id": f"riverbed-{name}-sink", "sink_batch_rows": 1000})
    with connect(settings.effective_clickhouse_dsn, f"riverbed_{name.replace('-', '_')}") as client:
        migrate(client)
        sink = ClickHouseSink(settings, client)
        drain_sink(sink)
        stored = {
            r[0]
            for r in client.query_rows(
                "SELECT trace_id FROM traces FINAL WHERE trace_id LIKE {p:String}", {"p": f"{run_id}-%"}
            )
        }
    return stored, sink


def test_a_batch_message_that_does_not_hold_its_count_is_rejected_whole(broker: Settings) -> None:
    run_id = f"avro-bad-batch-{datetime.now(UTC).timestamp():.0f}"
    good, overcounted, truncated, uncounted = (
        [varied_trace(i, run_id) for i in range(start, start + 10, 2)] for start in (0, 100, 200, 300)
    )
    sent = [as_sent(tb.trace_messages(group)[0]) for group in (good, overcounted, truncated, uncounted)]
    lying = [(k, b"6" if k == tb.RECORDS_HEADER else v) for k, v in sent[1][1]]
    sent[1] = (sent[1][0], lying)
    sent[2] = (sent[2][0][:-9], sent[2][1])
    sent[3] = (sent[3][0], [(k, v) for k, v in sent[3][1] if k != tb.RECORDS_HEADER])
    single = varied_trace(400, run_id)
    with capture_logs() as logs:
        stored, sink = drained_trace_ids(
            broker, "avro-bad-batch", run_id, [*sent, env.encode_event(AI_TRACES, single)[:2]]
        )
    assert stored == {t["trace_id"] for t in [*good, single]}
    # the miscounted and the truncated batch with the 6 and 5 traces they declare, the uncounted one
    # refused at the envelope check as one message
    assert sink.stats.rejected[AI_TRACES] == 6 + 5 + 1
    # each rejection names where the record waits for a replay
    rejected = [e for e in logs if e["event"] == "sink_record_rejected" and e["topic"] == AI_TRACES]
    assert sorted(e["rows"] for e in rejected) == [1, 5, 6]
    assert len({(e["partition"], e["offset"]) for e in rejected}) == 3


def test_a_batch_with_a_bad_value_takes_the_row_path_and_keeps_the_good_ones(broker: Settings) -> None:
    run_id = f"avro-bad-{datetime.now(UTC).timestamp():.0f}"
    values = []
    for i in range(30):
        value, headers, _ = env.encode_event(AI_TRACES, varied_trace(i, run_id))
        if i == 10:
            value += b"\x00"  # one trailing byte: a different writer schema
        if i == 20:
            value = value[:-5]  # truncated
        values.append((value, headers))
    stored, sink = drained_trace_ids(broker, "avro-bad", run_id, values)
    assert stored == {f"{run_id}-{i}" for i in range(30) if i not in (10, 20)}
    assert sink.stats.rejected[AI_TRACES] >= 2


class SlowClient:
    """The real chdb client behind a server that takes ``delay_s`` longer to answer each insert."""

    def __init__(self, client: Any, delay_s: float) -> None:
        self._client = client
        self.delay_s = delay_s
        self.inserts = 0

    def insert(self, table: str, rows: Any, columns: Any) -> None:
        self.inserts += 1
        time.sleep(self.delay_s)
        self._client.insert(table, rows, columns)

    def insert_avro(self, table: str, columns: Any, container: bytes) -> None:
        self.inserts += 1
        time.sleep(self.delay_s)
        self._client.insert_avro(table, columns, container)


def test_the_sink_reports_where_its_time_went(broker: Settings) -> None:
    """``SinkStats.seconds`` is what an operator reads when a sink falls behind: every stage of
    the loop is there, a slow ClickHouse shows up as insert time, and the stages never add up to
    more than the run."""
    run_id = f"avro-stages-{datetime.now(UTC).timestamp():.0f}"
    settings = broker.model_copy(update={"app_id": f"riverbed-{run_id}", "sink_batch_rows": 25})
    with connect(settings.effective_clickhouse_dsn, "riverbed_avro_stages") as client:
        migrate(client)
        slow = SlowClient(client, delay_s=0.2)
        sink = ClickHouseSink(settings, slow)  # type: ignore[arg-type]

        async def only_this_tests_traces() -> None:
            await start_sink_group_at_end(settings, sink.group_id)
            encoded = [env.encode_event(AI_TRACES, varied_trace(i, run_id)) for i in range(60)]
            await produce(broker, [(value, headers) for value, headers, _ in encoded])

        asyncio.run(only_this_tests_traces())
        started = time.perf_counter()
        drain_sink(sink)
        wall_s = time.perf_counter() - started
    seconds = sink.stats.seconds
    assert sink.stats.rows["traces"] == 60 and slow.inserts >= 3  # in batches of 25
    assert seconds["insert"] >= slow.delay_s * slow.inserts
    assert all(seconds[stage] > 0 for stage in ("join", "fetch", "check", "commit")), dict(seconds)
    assert sum(seconds.values()) <= wall_s
