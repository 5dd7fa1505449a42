"""The ClickHouse sink: consumes traces and result events and writes them in bounded batches.

Offsets are committed only after the batch holding them is inserted, so a crash replays rows
rather than losing them; the tables are ReplacingMergeTree keyed on deterministic ids, so a replayed
row replaces itself. The chdb client is synchronous, so inserts run in a thread, off the loop.

Traces are the volume (one per model call), so they skip Python decoding: after the envelope
checks the Avro values are wrapped, undecoded, in one container file per batch and ClickHouse
decodes them (``FORMAT Avro``). Decoding each record in Python and building its row cost ~24 µs
of the ~45 µs a trace took here (docs/analytics.md). The worker publishes traces in batch
messages (one per tenant and worker batch, streams/trace_batches.py), so Kafka's per-record costs
are paid per batch, not per trace. If ClickHouse rejects a batch's data (a value that does not
hold exactly the records its message declares misaligns the block), that batch takes the row path
instead: each message decoded on its own, the bad ones rejected and counted, the rest inserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from gateway.redact import Redactor
from sinks.batcher import BatchBuffer
from sinks.clickhouse import (
    RESULT_COLUMNS,
    TRACE_AVRO_COLUMNS,
    TRACE_COLUMNS,
    ClickHouseClient,
    result_row,
    trace_row,
)
from sinks.compaction import compact_closed_days
from streams import envelope as env
from streams.codec import CodecError, container_file, decode_many
from streams.config import Settings
from streams.topics import AI_TRACES, RESULT_TOPICS
from streams.trace_batches import TraceBatchError, check_trace_message

log = structlog.get_logger(__name__)
SINK_GROUP_SUFFIX = "clickhouse-sink"
SINK_MAX_BYTES = 64 * 1024 * 1024
COMPACTIONS_PER_PASS = 4
"""Closed days of traces merged per compaction pass at most; the sink inserts nothing meanwhile."""
MAX_POLL_INTERVAL_MS = 60 * 60 * 1000
"""How long the sink may go without fetching (it stops fetching while ClickHouse is down)."""


@dataclass
class SinkStats:
    rows: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    flushes: int = 0
    inserts: int = 0
    """ClickHouse inserts that succeeded (a flush makes one per table, or several for big batches)."""
    insert_failures: int = 0
    paused: bool = False
    compaction_passes: int = 0
    compacted_partitions: int = 0
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    """Wall time per stage of the loop: ``join`` (consumer start, group join included),
    ``fetch`` (awaiting the broker's records, idle waits for new ones included), ``check``
    (envelope checks, result rows), ``insert`` (every ClickHouse call, failed ones included, not
    the backoff between them) and ``commit``. Why: when a sink falls behind, this says whether the
    broker, the sink's own Python or ClickHouse is the slow part (logged at stop)."""


@contextlib.contextmanager
def _timed(seconds: defaultdict[str, float], stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] += time.perf_counter() - started


class TraceMessage(NamedTuple):
    """A checked ai.traces.v1 record waiting for its insert: its value, the traces it holds, and
    where it came from (named in the log if ClickHouse and the row path refuse it)."""

    value: bytes
    traces: int
    partition: int
    offset: int


def insert_chunks(messages: list[TraceMessage], max_rows: int) -> Iterator[tuple[list[TraceMessage], int]]:
    """Consecutive messages of at most ``max_rows`` traces together (a bigger message alone), and
    their trace count. Why: one fetch may hand over many batch messages, hundreds of thousands of
    traces; inserts stay the size the setting asks for, whatever the messages hold."""
    chunk: list[TraceMessage] = []
    rows = 0
    for message in messages:
        if chunk and rows + message.traces > max_rows:
            yield chunk, rows
            chunk, rows = [], 0
        chunk.append(message)
        rows += message.traces
    if chunk:
        yield chunk, rows


class DataRejected(Exception):
    """ClickHouse refused the data of an insert (as opposed to being unreachable)."""


def _is_data_error(exc: BaseException) -> bool:
    """A server-side refusal that is not a connection problem (clickhouse-connect's taxonomy)."""
    return isinstance(exc, DatabaseError) and not isinstance(exc, OperationalError)


class ClickHouseSink:
    def __init__(self, settings: Settings, client: ClickHouseClient) -> None:
        self._settings = settings
        self._client = client
        self._traces: BatchBuffer[TraceMessage] = BatchBuffer(
            settings.sink_batch_rows, settings.sink_flush_interval_s
        )
        self._results: BatchBuffer[tuple[Any, ...]] = BatchBuffer(
            settings.sink_batch_rows, settings.sink_flush_interval_s
        )
        self._consumer: AIOKafkaConsumer | None = None
        self._redactor = Redactor(settings.redact_patterns)
        self.stats = SinkStats()
        self._stopping = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._in_flight = 0
        self._compacted_at = time.monotonic()

    @property
    def group_id(self) -> str:
        return f"{self._settings.app_id}-{SINK_GROUP_SUFFIX}"

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            AI_TRACES,
            *RESULT_TOPICS,
            bootstrap_servers=self._settings.kafka_bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self._settings.sink_batch_rows,
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
        )
        self._consumer = consumer
        seconds = self.stats.seconds
        with _timed(seconds, "join"):
            await consumer.start()
        try:
            while not self._stopping.is_set():
                timeout_ms = int(1000 * min(self._settings.sink_flush_interval_s, 0.5))
                with _timed(seconds, "fetch"):
                    batches = await consumer.getmany(
                        timeout_ms=timeout_ms, max_records=self._settings.sink_batch_rows
                    )
                with _timed(seconds, "check"):
                    for records in batches.values():
                        self._buffer(records)
                if self._traces.due() or self._results.due():
                    await self.flush()
                if self._compaction_due():
                    await self.compact()
            await self.flush()
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
            log.info(
                "sink_stopped",
                rows=dict(self.stats.rows),
                rejected=dict(self.stats.rejected),
                seconds={stage: round(s, 3) for stage, s in seconds.items()},
            )

    def stop(self) -> None:
        self._stopping.set()

    def _compaction_due(self) -> bool:
        interval = self._settings.trace_compaction_interval_s
        return interval > 0 and time.monotonic() - self._compacted_at >= interval

    async def compact(self) -> None:
        """One pass merging closed days of traces (sinks/compaction.py). A failure is logged and waits
        for the next pass: compaction only makes reads cheaper, no row depends on it."""
        self._compacted_at = time.monotonic()
        self.stats.compaction_passes += 1
        try:
            done = await asyncio.to_thread(compact_closed_days, self._client, limit=COMPACTIONS_PER_PASS)
        except (DatabaseError, OperationalError, OSError) as exc:
            log.warning("trace_compaction_failed", error=repr(exc))
            return
        self.stats.compacted_partitions += len(done)
        for item in done:
            log.info("trace_day_compacted", partition=item.partition, parts=item.parts, rows=item.rows)

    def _buffer(self, records: Sequence[Any]) -> None:
        now = datetime.now(UTC)
        for record in records:
            try:
                if record.topic == AI_TRACES:
                    # checked on the header bytes: a trace message's headers are not decoded here
                    value, count = check_trace_message(record.value, dict(record.headers), SINK_MAX_BYTES)
                    self._traces.add(TraceMessage(value, count, record.partition, record.offset), rows=count)
                else:
                    headers = env.header_map(record.headers)
                    data = env.decode_event(record.topic, record.value, headers, SINK_MAX_BYTES)
                    self._results.add(
                        result_row(record.topic, data.id, data.data, now, self._redactor, headers)
                    )
            except (CodecError, env.EnvelopeError, TraceBatchError, KeyError, ValueError) as exc:
                self._reject(record.topic, record.partition, record.offset, exc)

    async def flush(self) -> None:
        """Insert everything buffered, then commit what the consumer has handed us so far.

        Serialised, and counted as in flight until inserted, so ``lag()`` never reports 0 while
        rows are on their way into ClickHouse.
        """
        async with self._flush_lock:
            traces, results = self._traces.drain(), self._results.drain()
            self._in_flight = len(traces) + len(results)
            try:
                for chunk, rows in insert_chunks(traces, self._settings.sink_batch_rows):
                    await self._insert_traces(chunk, rows)
                await self._insert_until_done(
                    "results", len(results), lambda: self._client.insert("results", results, RESULT_COLUMNS)
                )
                if self._consumer is not None:
                    with _timed(self.stats.seconds, "commit"):
                        await self._consumer.commit()
            finally:
                self._in_flight = 0
            if traces or results:
                self.stats.flushes += 1

    async def _insert_traces(self, messages: list[TraceMessage], count: int) -> None:
        """ClickHouse decodes the batch (``count`` traces in ``messages``: each a value and how many
        traces it holds); if it refuses the data, the row path sorts good messages from bad."""
        if not messages:
            return
        container = container_file(AI_TRACES, [message.value for message in messages], records=count)
        try:
            await self._insert_until_done(
                "traces",
                count,
                lambda: self._client.insert_avro("traces", TRACE_AVRO_COLUMNS, container),
                data_errors=True,
            )
        except DataRejected as exc:
            log.warning("trace_batch_rejected_by_clickhouse", rows=count, error=repr(exc.__cause__))
            rows = self._trace_rows(messages)
            await self._insert_until_done(
                "traces", len(rows), lambda: self._client.insert("traces", rows, TRACE_COLUMNS)
            )

    def _trace_rows(self, messages: list[TraceMessage]) -> list[tuple[Any, ...]]:
        """Rows of every message that decodes whole; a message that does not is rejected with all
        the traces it declares (its records cannot be told apart once one is misread)."""
        now = datetime.now(UTC)
        rows = []
        for message in messages:
            try:
                records = decode_many(AI_TRACES, message.value, message.traces)
                rows.extend([trace_row(record, now) for record in records])
            except (CodecError, KeyError, ValueError) as exc:
                self._reject(AI_TRACES, message.partition, message.offset, exc, rows=message.traces)
        return rows

    def _reject(self, topic: str, partition: int, offset: int, exc: Exception, rows: int = 1) -> None:
        """Count and log a record the sink cannot store (``rows``: how many traces a batch declared).
        The seam for a sink DLQ: the record stays in its topic at this offset for replay."""
        self.stats.rejected[topic] += rows
        log.error(
            "sink_record_rejected",
            topic=topic,
            partition=partition,
            offset=offset,
            rows=rows,
            error=repr(exc),
        )

    async def _insert_until_done(
        self, table: str, count: int, insert: Callable[[], None], *, data_errors: bool = False
    ) -> None:
        """Insert, and while ClickHouse refuses, keep the rows, pause consumption and try again with
        backoff: the backlog waits in its topic (not in our memory) and drains by itself when
        ClickHouse is back. Only a stop gives up, uncommitted, so the rows replay on the next start.
        With ``data_errors``, ClickHouse refusing the data itself (not being unreachable) raises
        ``DataRejected`` instead of retrying: the same bytes would be refused again."""
        if not count:
            return
        delay_s = self._settings.sink_retry_base_s
        paused = False
        while True:
            try:
                with _timed(self.stats.seconds, "insert"):
                    await asyncio.to_thread(insert)
                break
            except Exception as exc:
                if data_errors and _is_data_error(exc):
                    raise DataRejected from exc
                if self._stopping.is_set():
                    raise
                self.stats.insert_failures += 1
                log.warning(
                    "clickhouse_insert_failed",
                    table=table,
                    rows=count,
                    retry_in_s=delay_s,
                    error=repr(exc),
                )
                if not paused:
                    paused = self._pause()
                await self._idle(delay_s)
                delay_s = min(delay_s * 2, self._settings.sink_retry_cap_s)
        self.stats.rows[table] += count
        self.stats.inserts += 1
        if paused:
            self._resume()

    def _pause(self) -> bool:
        consumer = self._consumer
        if consumer is None:
            return False
        consumer.pause(*consumer.assignment())
        self.stats.paused = True
        return True

    def _resume(self) -> None:
        if self._consumer is not None:
            self._consumer.resume(*self._consumer.assignment())
        self.stats.paused = False
        log.info("clickhouse_insert_recovered")

    async def _idle(self, seconds: float) -> None:
        """Wait without polling: nothing is fetched, so nothing piles up in memory. The group keeps
        us as a member for ``MAX_POLL_INTERVAL_MS``; an outage longer than that costs a rejoin
        (the uncommitted rows are replayed, never lost)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0 and not self._stopping.is_set():
            await asyncio.sleep(min(left, 0.2))

    async def lag(self) -> int:
        """Records in the sink's topics not yet consumed by this sink (0 means caught up)."""
        consumer = self._consumer
        if consumer is None:
            return -1
        assigned: set[TopicPartition] = consumer.assignment()
        if not assigned:
            return -1
        ends = await consumer.end_offsets(list(assigned))
        total = 0
        for tp in assigned:
            total += max(0, ends[tp] - await consumer.position(tp))
        return total + len(self._traces) + len(self._results) + self._in_flight


async def run_until_caught_up(sink: ClickHouseSink, timeout_s: float) -> bool:
    """Run ``sink`` until everything in its topics is in ClickHouse, then stop it; False on timeout.
    For one-shot jobs (shadow runs, tests) on a stack where no sink process runs."""
    task = asyncio.create_task(sink.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    caught_up = False
    try:
        while loop.time() < deadline and not (caught_up := await sink.lag() == 0):
            await asyncio.sleep(0.1)
    finally:
        sink.stop()
        await asyncio.wait_for(task, 60)
    return caught_up
