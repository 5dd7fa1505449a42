"""The empty-fetch floor: an idle consumer must not hammer a broker that answers empty fetches at
once (noida-db does), and a consumer must still get new records promptly."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.config import Settings
from streams.kafka_compat import delayed_empty_fetches, install_empty_fetch_floor, installed_floor_ms
from streams.topics import TICKET_CREATED, dlq_topic
from tests.conftest import run


def test_the_floor_is_installed_for_the_suite_like_the_cli_does() -> None:
    assert installed_floor_ms() == Settings().kafka_empty_fetch_floor_ms > 0


def test_idle_consumer_fetches_at_most_once_per_floor_and_still_gets_new_records(broker: Settings) -> None:
    topic = dlq_topic(TICKET_CREATED)  # a topic nothing else in the suite writes to

    async def scenario() -> tuple[int, int, bytes]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=broker.kafka_bootstrap,
            group_id=f"idle-{uuid.uuid4()}",
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        await consumer.start()
        try:
            await consumer.getmany(timeout_ms=500)  # assignment settles
            before = delayed_empty_fetches()
            await asyncio.sleep(1.0)
            delayed = delayed_empty_fetches() - before
            producer = AIOKafkaProducer(bootstrap_servers=broker.kafka_bootstrap)
            await producer.start()
            marker = uuid.uuid4().bytes
            await producer.send_and_wait(topic, marker)
            await producer.stop()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while loop.time() < deadline:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for r in records:
                        if r.value == marker:
                            return before, delayed, r.value
            return before, delayed, b""
        finally:
            await consumer.stop()

    _, delayed, got = run(scenario())
    floor_s = installed_floor_ms() / 1000
    # noida-db answers empty fetches at once, so the floor applied; at most one fetch per floor
    # interval in a second (plus slack for the partitions of one node fetched together).
    assert 1 <= delayed <= 2 / floor_s
    assert got, "a record produced while idle must still arrive"


def test_floor_can_be_switched_off_and_on() -> None:
    try:
        install_empty_fetch_floor(0)
        assert installed_floor_ms() == 0
    finally:
        install_empty_fetch_floor(Settings().kafka_empty_fetch_floor_ms)
    assert installed_floor_ms() == Settings().kafka_empty_fetch_floor_ms
