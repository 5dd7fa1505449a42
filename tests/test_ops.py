"""Operator tooling against the real broker: bounded selections, replay to a shadow topic, DLQ
requeue by error class, and a consumer-group offset reset by time (library and CLI)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.outcome import InboundEvent, StepFailure
from agents.routing import FailureRouter, RetryPolicy
from streams.config import Settings
from streams.ops import (
    REPLAYED_FROM,
    Selection,
    committed_offsets,
    original_topic,
    republish,
    reset_offsets,
    select,
)
from streams.topics import TICKET_CREATED, dlq_topic
from tests.conftest import cli, run


async def _create(bootstrap: str, *names: str, partitions: int = 2) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, rows: list[tuple[int, str, int]]) -> None:
    """rows: (partition, event id, timestamp ms)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, eid, ts in rows:
            await producer.send_and_wait(
                topic,
                f"value-{eid}".encode(),
                key=eid.encode(),
                partition=partition,
                timestamp_ms=ts,
                headers=[("ce_id", eid.encode()), ("x-riverbed-attempts", b"2")],
            )
    finally:
        await producer.stop()


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


# Recent enough that the broker's retention (7 days) never deletes the records under the test.
T0 = (datetime.now(UTC) - timedelta(hours=12)).replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def topic(broker: Settings) -> str:
    name = f"ops-{uuid.uuid4().hex[:8]}"
    rows = [(i % 2, f"e{i}", _ms(T0 + timedelta(hours=i))) for i in range(10)]
    run(_create(broker.kafka_bootstrap, name, f"{name}.shadow"))
    run(_produce(broker.kafka_bootstrap, name, rows))
    return name


def test_selection_by_time_offsets_and_event_ids(broker: Settings, topic: str) -> None:
    everything = run(select(broker.kafka_bootstrap, topic, Selection()))
    assert sorted(r.event_id for r in everything) == sorted(f"e{i}" for i in range(10))
    window = Selection(since=T0 + timedelta(hours=3), until=T0 + timedelta(hours=7))
    assert sorted(r.event_id for r in run(select(broker.kafka_bootstrap, topic, window))) == [
        "e3",
        "e4",
        "e5",
        "e6",
    ]
    # partition 1 holds e1, e3, e5, e7, e9 at offsets 0..4
    by_offset = Selection(partition=1, start_offset=1, end_offset=3)
    assert [r.event_id for r in run(select(broker.kafka_bootstrap, topic, by_offset))] == ["e3", "e5"]
    by_id = Selection(event_ids={"e2", "e8", "nope"})
    assert sorted(r.event_id for r in run(select(broker.kafka_bootstrap, topic, by_id))) == ["e2", "e8"]


def test_replay_to_a_shadow_topic_keeps_bytes_and_marks_the_origin(broker: Settings, topic: str) -> None:
    chosen = run(select(broker.kafka_bootstrap, topic, Selection(event_ids={"e4"})))
    counts = run(republish(broker.kafka_bootstrap, chosen, lambda r: f"{topic}.shadow"))
    assert counts == {f"{topic}.shadow": 1}
    [copy] = run(select(broker.kafka_bootstrap, f"{topic}.shadow", Selection()))
    assert copy.value == b"value-e4" and copy.key == b"e4"
    headers = copy.header_values
    assert headers["ce_id"] == "e4"
    assert headers[REPLAYED_FROM] == chosen[0].position
    assert "x-riverbed-attempts" not in headers  # a replayed event starts its attempts afresh
    # replaying into the topic being read never chases its own output: the end is fixed up front
    again = run(select(broker.kafka_bootstrap, topic, Selection()))
    run(republish(broker.kafka_bootstrap, again, lambda r: topic))
    assert len(run(select(broker.kafka_bootstrap, topic, Selection()))) == 20


def test_requeue_by_error_class_sends_only_those_back_to_their_origin(broker: Settings) -> None:
    origin = f"ops-in-{uuid.uuid4().hex[:8]}"
    run(_create(broker.kafka_bootstrap, origin, dlq_topic(origin)))
    router = FailureRouter(RetryPolicy(max_attempts=1))
    failures = {
        "a": StepFailure("fetch", "FetchError", "HTTP 503", retryable=True),
        "b": StepFailure("decode", "CodecError", "truncated", retryable=False),
        "c": StepFailure("fetch", "FetchError", "timeout", retryable=True),
    }
    letters = [
        router.route(InboundEvent(origin, 0, n, eid.encode(), eid.encode(), (("ce_id", eid.encode()),)), f)
        for n, (eid, f) in enumerate(failures.items())
    ]
    assert {out.topic for out in letters} == {dlq_topic(origin)}

    async def publish_letters() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for out in letters:
                await producer.send_and_wait(out.topic, out.value, key=out.key, headers=out.headers)
        finally:
            await producer.stop()

    run(publish_letters())
    fetch_errors = run(select(broker.kafka_bootstrap, dlq_topic(origin), Selection(error_class="FetchError")))
    assert sorted(r.event_id for r in fetch_errors) == ["a", "c"]
    assert run(republish(broker.kafka_bootstrap, fetch_errors, original_topic)) == {origin: 2}
    back = run(select(broker.kafka_bootstrap, origin, Selection()))
    assert sorted((r.event_id, r.value) for r in back) == [("a", b"a"), ("c", b"c")]
    assert not any(k.startswith("x-riverbed-error") for r in back for k, _ in r.headers)


def test_offsets_reset_by_time_commits_the_first_offset_at_or_after_it(broker: Settings, topic: str) -> None:
    group = f"ops-group-{uuid.uuid4().hex[:8]}"
    moved = run(reset_offsets(broker.kafka_bootstrap, group, [topic], T0 + timedelta(hours=4)))
    # partition 0: e0 e2 e4 e6 e8 at hours 0,2,4,6,8 -> e4 is offset 2; partition 1: e5 (hour 5) is offset 2
    assert {tp.partition: o for tp, o in moved.items()} == {0: 2, 1: 2}
    committed = run(committed_offsets(broker.kafka_bootstrap, group, [topic]))
    assert {tp.partition: o for tp, o in committed.items()} == {0: 2, 1: 2}
    # past every record: the end, so the group skips the whole history
    moved = run(reset_offsets(broker.kafka_bootstrap, group, [topic], T0 + timedelta(days=30)))
    assert {tp.partition: o for tp, o in moved.items()} == {0: 5, 1: 5}


def test_cli_lists_and_dry_runs_requeue_of_dead_letters(broker: Settings) -> None:
    marker = f"cli-{uuid.uuid4().hex[:8]}"
    failure = StepFailure("fetch", f"Err{marker}", "HTTP 503 from upstream", retryable=True)
    out = FailureRouter(RetryPolicy(max_attempts=1)).route(
        InboundEvent(TICKET_CREATED, 1, 42, b"k", b"v", (("ce_id", marker.encode()),)), failure
    )

    async def publish_letter() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(out.topic, out.value, key=out.key, headers=out.headers)
        finally:
            await producer.stop()

    run(publish_letter())
    listed = cli(broker, "dlq", "list", "--error-class", f"Err{marker}")
    assert listed.returncode == 0, listed.stderr
    assert marker in listed.stdout and "ticket.created.v1/1/42" in listed.stdout
    assert "1 dead letters" in listed.stdout
    dry = cli(broker, "dlq", "requeue", "--error-class", f"Err{marker}", "--dry-run")
    assert dry.returncode == 0 and "1 dead letters would be requeued" in dry.stdout
    shown = cli(broker, "dlq", "show", marker)
    assert shown.returncode == 0 and "HTTP 503 from upstream" in shown.stdout


def test_cli_offsets_reset_asks_before_it_commits(broker: Settings, topic: str) -> None:
    group = f"ops-cli-{uuid.uuid4().hex[:8]}"
    four_hours_in = (T0 + timedelta(hours=4)).strftime("%Y-%m-%dT%H:%MZ")
    args = ("offsets", "reset", "--to", four_hours_in, "--topic", topic, "--group", group)
    declined = cli(broker, *args, stdin="n\n")
    assert declined.returncode == 1
    assert all(o is None for o in run(committed_offsets(broker.kafka_bootstrap, group, [topic])).values())
    accepted = cli(broker, *args, "--yes")
    assert accepted.returncode == 0, accepted.stderr
    committed = run(committed_offsets(broker.kafka_bootstrap, group, [topic]))
    assert {tp.partition: o for tp, o in committed.items()} == {0: 2, 1: 2}
