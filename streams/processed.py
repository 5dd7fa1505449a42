"""The processed-events table: which input events already have a durable result, so a redelivery
(after a crash, a rebalance or an offset reset) does not pay for its model calls twice.

The table is changelog-backed, Kafka-style: its source of truth is the compacted topic
``riverbed.processed.v1``, one record per finished event, keyed by the result event id (which is
``uuid5(input event id, workflow version)``, so "this event under this version" is one key). Each
worker holds the recent part in memory as a set of 16-byte ids:

- at start it loads the last ``processed_window_s`` of the changelog (by timestamp, so start-up time
  is bounded even where the broker does not compact) before it takes any event;
- it keeps tailing the changelog, so markers written by other workers are known within moments;
- it writes a marker only after the broker acknowledged the event's result, so a marker never
  claims a result that could still be lost; a crash between the two only costs a recomputation,
  which deterministic ids make harmless.

Faust's own Table was the obvious candidate and was not used: its changelog writes take the
partition of the event being processed at the time, and our results are published from batches after
the event context is gone (streams/inflight.py); a plain topic with explicit keys has no such coupling.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.outcome import OutboundEvent
from streams.offsets import partitions_of
from streams.topics import PROCESSED_EVENTS

log = structlog.get_logger(__name__)


class ProcessedEvents:
    """Result ids seen within a time window, capped in size; the oldest go first."""

    def __init__(self, window_s: float, max_entries: int) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._seen: dict[bytes, float] = {}  # insertion-ordered: eviction walks from the front

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, result_id: str) -> bool:
        return _key(result_id) in self._seen

    def add(self, result_id: str, at_s: float) -> None:
        """``at_s``: when the result was produced (epoch seconds); entries past the window are dropped."""
        now = time.time()
        if at_s < now - self.window_s:
            return
        self._seen[_key(result_id)] = at_s
        self._evict(now)

    def _evict(self, now: float) -> None:
        horizon = now - self.window_s
        while self._seen:
            oldest_key = next(iter(self._seen))
            if len(self._seen) <= self.max_entries and self._seen[oldest_key] >= horizon:
                return
            del self._seen[oldest_key]


def _key(result_id: str) -> bytes:
    try:
        return uuid.UUID(result_id).bytes
    except ValueError:
        return result_id.encode()


def marker(result_id: str) -> OutboundEvent:
    """The changelog record saying "this result is durable"; the record timestamp dates it."""
    return OutboundEvent(PROCESSED_EVENTS, result_id.encode(), b"", [], result_id)


class ProcessedChangelog:
    """Keeps a ``ProcessedEvents`` in step with the changelog topic: load the window, then tail."""

    def __init__(self, bootstrap: str, table: ProcessedEvents) -> None:
        self.bootstrap = bootstrap
        self.table = table
        self._consumer: AIOKafkaConsumer | None = None
        self._tail: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Load the window's markers (returns how many) and start tailing."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        self._consumer = consumer
        parts = await partitions_of(consumer, [PROCESSED_EVENTS])
        consumer.assign(parts)
        since_ms = int((time.time() - self.table.window_s) * 1000)
        starts = await consumer.offsets_for_times({tp: since_ms for tp in parts})
        ends: dict[TopicPartition, int] = await consumer.end_offsets(parts)
        for tp in parts:
            found = starts.get(tp)
            consumer.seek(tp, found.offset if found is not None else ends[tp])
        started = time.perf_counter()
        behind = {tp for tp, end in ends.items() if await consumer.position(tp) < end}
        while behind:
            await self._read(consumer, timeout_ms=500)
            behind = {tp for tp in behind if await consumer.position(tp) < ends[tp]}
        log.info(
            "processed_events_loaded",
            entries=len(self.table),
            seconds=round(time.perf_counter() - started, 3),
        )
        self._tail = asyncio.create_task(self._follow(consumer))
        return len(self.table)

    async def _read(self, consumer: AIOKafkaConsumer, timeout_ms: int) -> None:
        for records in (await consumer.getmany(timeout_ms=timeout_ms, max_records=10_000)).values():
            for record in records:
                if record.key:
                    self.table.add(record.key.decode(), record.timestamp / 1000)

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                await self._read(consumer, timeout_ms=1000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker restarting: keep the table, try again
                log.warning("processed_events_tail_failed", error=repr(exc))
                await asyncio.sleep(1.0)

    def record(self, result_ids: list[str]) -> None:
        """Our own markers, acknowledged: known at once, without waiting for the tail to see them."""
        now = time.time()
        for result_id in result_ids:
            self.table.add(result_id, now)

    async def stop(self) -> None:
        if self._tail is not None:
            self._tail.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tail
        if self._consumer is not None:
            await self._consumer.stop()
