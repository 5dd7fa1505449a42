"""Small helpers over aiokafka for reading topics from a known position (used by the main job,
tests and benchmarks, which observe the pipeline from outside like a downstream consumer would)."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition


async def partitions_of(consumer: AIOKafkaConsumer, topics: Sequence[str]) -> list[TopicPartition]:
    """All partitions of ``topics``; refreshes metadata once if the consumer has not seen them yet."""
    if any(consumer.partitions_for_topic(t) is None for t in topics):
        await consumer.topics()
    return [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]


async def end_offsets(bootstrap: str, topics: Sequence[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(await partitions_of(consumer, topics))
        return ends
    finally:
        await consumer.stop()


async def reader_from(bootstrap: str, start: dict[TopicPartition, int]) -> AIOKafkaConsumer:
    """A started, group-less consumer positioned at ``start``; the caller stops it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    consumer.assign(list(start))
    for tp, offset in start.items():
        consumer.seek(tp, offset)
    return consumer
