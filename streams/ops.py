"""What an operator does to topics after a fix: select a range of records, look at dead letters,
re-publish (replay, requeue), and move the worker group's offsets.

Selections are bounded: the end of every partition is fixed when the selection starts, so a replay
into the topic it reads from can never chase its own output. Records keep their key, value and
headers byte-for-byte; a re-published record loses the ``x-riverbed-*`` failure headers (its
attempt count starts again) and gains ``x-riverbed-replayed-from``, so its origin stays traceable.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from agents.routing import ERROR_CLASS, HEADER_PREFIX
from streams.envelope import header_map
from streams.offsets import partitions_of

REPLAYED_FROM = HEADER_PREFIX + "replayed-from"
REPLAYED_AT = HEADER_PREFIX + "replayed-at"


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @property
    def header_values(self) -> dict[str, str]:
        return header_map(self.headers)

    @property
    def event_id(self) -> str:
        return self.header_values.get("ce_id", "")

    @property
    def position(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True)
class Selection:
    """Which records of a topic: a time range, an offset range on one partition, event ids, and for
    dead letters an error class. Criteria combine with AND; none at all selects the whole topic."""

    since: datetime | None = None
    until: datetime | None = None
    partition: int | None = None
    start_offset: int | None = None
    end_offset: int | None = None
    """Exclusive."""
    event_ids: Collection[str] = ()
    error_class: str | None = None

    def matches(self, record: Record) -> bool:
        if self.event_ids and record.event_id not in self.event_ids:
            return False
        return self.error_class is None or record.header_values.get(ERROR_CLASS) == self.error_class


def parse_time(text: str) -> datetime:
    """ISO 8601; ``Z`` accepted; a time without zone is UTC (ops speak UTC at 3 a.m.)."""
    when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _millis(when: datetime) -> int:
    return int(when.timestamp() * 1000)


async def _offsets_at(
    consumer: AIOKafkaConsumer, parts: list[TopicPartition], when: datetime, ends: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """First offset at or after ``when`` per partition; the end offset where nothing is that new."""
    found = await consumer.offsets_for_times({tp: _millis(when) for tp in parts})
    return {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in parts}


async def _bounds(
    consumer: AIOKafkaConsumer, topic: str, selection: Selection
) -> dict[TopicPartition, tuple[int, int]]:
    parts = await partitions_of(consumer, [topic])
    if not parts:
        raise ValueError(f"topic {topic!r} does not exist")
    if selection.partition is not None:
        parts = [tp for tp in parts if tp.partition == selection.partition]
        if not parts:
            raise ValueError(f"topic {topic!r} has no partition {selection.partition}")
    starts: dict[TopicPartition, int] = await consumer.beginning_offsets(parts)
    ends: dict[TopicPartition, int] = await consumer.end_offsets(parts)
    if selection.since is not None:
        starts = {
            tp: max(starts[tp], o)
            for tp, o in (await _offsets_at(consumer, parts, selection.since, ends)).items()
        }
    if selection.until is not None:
        ends = {
            tp: min(ends[tp], o)
            for tp, o in (await _offsets_at(consumer, parts, selection.until, ends)).items()
        }
    if selection.start_offset is not None:
        starts = {tp: max(o, selection.start_offset) for tp, o in starts.items()}
    if selection.end_offset is not None:
        ends = {tp: min(o, selection.end_offset) for tp, o in ends.items()}
    return {tp: (starts[tp], ends[tp]) for tp in parts if starts[tp] < ends[tp]}


async def select(bootstrap: str, topic: str, selection: Selection, limit: int | None = None) -> list[Record]:
    """The matching records, in partition then offset order, read up to the ends fixed at the start."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        bounds = await _bounds(consumer, topic, selection)
        found: list[Record] = []
        for tp, (start, end) in sorted(bounds.items(), key=lambda item: item[0].partition):
            consumer.assign([tp])
            consumer.seek(tp, start)
            position = start
            while position < end and (limit is None or len(found) < limit):
                batch = await consumer.getmany(tp, timeout_ms=1000, max_records=1000)
                for msg in batch.get(tp, []):
                    position = msg.offset + 1
                    if msg.offset >= end:
                        break
                    record = Record(
                        msg.topic,
                        msg.partition,
                        msg.offset,
                        msg.timestamp,
                        msg.key,
                        msg.value,
                        tuple((k, v or b"") for k, v in msg.headers),
                    )
                    if selection.matches(record):
                        found.append(record)
                if not batch:
                    position = await consumer.position(tp)
        return found[:limit] if limit is not None else found
    finally:
        await consumer.stop()


def replay_headers(record: Record, now: datetime | None = None) -> list[tuple[str, bytes]]:
    kept = [(k, v) for k, v in record.headers if not k.startswith(HEADER_PREFIX)]
    stamp = (now or datetime.now(UTC)).isoformat()
    return [*kept, (REPLAYED_FROM, record.position.encode()), (REPLAYED_AT, stamp.encode())]


async def republish(
    bootstrap: str, records: Iterable[Record], target: Callable[[Record], str]
) -> dict[str, int]:
    """Publish each record, unchanged but for its headers, to ``target(record)``; waits for every
    acknowledgement. Returns how many went to each topic."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=16 * 1024 * 1024
    )
    await producer.start()
    counts: dict[str, int] = {}
    try:
        pending = []
        for record in records:
            topic = target(record)
            pending.append(
                await producer.send(topic, value=record.value, key=record.key, headers=replay_headers(record))
            )
            counts[topic] = counts.get(topic, 0) + 1
        for fut in pending:
            await fut
    finally:
        await producer.stop()
    return counts


def original_topic(record: Record) -> str:
    """Where a dead letter came from (its first origin, kept across retries)."""
    origin = record.header_values.get(HEADER_PREFIX + "original-topic")
    if not origin:
        raise ValueError(f"{record.position} carries no x-riverbed-original-topic header")
    return origin


async def reset_offsets(
    bootstrap: str, group: str, topics: list[str], when: datetime
) -> dict[TopicPartition, int]:
    """Commit, for ``group``, the first offset at or after ``when`` on every partition of ``topics``.

    The group must have no live members (stop the workers first): the broker refuses commits from
    outside a running generation, and a running worker would overwrite them anyway. Offsets are
    looked up by a group-less reader; the group's consumer only commits.
    """
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await reader.start()
    try:
        parts = await partitions_of(reader, topics)
        ends: dict[TopicPartition, int] = await reader.end_offsets(parts)
        targets = await _offsets_at(reader, parts, when, ends)
    finally:
        await reader.stop()
    await commit_offsets(bootstrap, group, targets)
    return targets


async def commit_offsets(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit ``offsets`` for ``group`` from outside it (the group must have no live members)."""
    if not offsets:
        return
    committer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await committer.start()
    try:
        committer.assign(list(offsets))
        await committer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in offsets.items()})
    finally:
        await committer.stop()


async def committed_offsets(
    bootstrap: str, group: str, topics: list[str]
) -> dict[TopicPartition, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = await partitions_of(consumer, topics)
        return {tp: await consumer.committed(tp) for tp in parts}
    finally:
        await consumer.stop()
