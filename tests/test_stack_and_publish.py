"""The local stack and the publisher against the real noida-db broker."""

from __future__ import annotations

import json
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from streams import envelope as env
from streams import stack
from streams.config import Settings
from streams.offsets import partitions_of
from streams.publish import document_drafts_from_dir, publish, read_rows, ticket_drafts
from streams.topics import DOCUMENT_UPLOADED, TICKET_CREATED, all_topics
from tests.conftest import run


async def _read_all(settings: Settings, topic: str) -> list[tuple[bytes | None, bytes, dict[str, str]]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = await partitions_of(consumer, [topic])
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        out = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in parts])

        while await behind():
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                out.extend((r.key, r.value, env.header_map(r.headers)) for r in records)
        return out
    finally:
        await consumer.stop()


def test_stack_up_creates_every_topic_and_status_sees_the_broker(broker: Settings) -> None:
    status = stack.status(broker)
    assert status.running and status.pid is not None
    assert {spec.name for spec in all_topics()} <= set(status.topics)


def test_stack_up_twice_reuses_the_running_broker(broker: Settings) -> None:
    first = stack.status(broker).pid
    assert stack.up(broker).pid == first


def test_publish_jsonl_tickets_and_a_document_directory(broker: Settings, tmp_path: Path) -> None:
    rows = tmp_path / "tickets.jsonl"
    rows.write_text(
        "\n".join(
            json.dumps({"ticket_id": f"J{i}", "text": f"help {i}", "tenant_id": "t-json"}) for i in range(5)
        )
        + "\n"
    )
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Title\n\nSome text.")
    (docs / "b.html").write_text("<html><body><p>Hello</p></body></html>")
    (docs / "ignored.bin").write_bytes(b"\x00\x01")

    published = run(
        publish(
            broker.kafka_bootstrap,
            [
                *ticket_drafts(read_rows(rows), tenant="unused", label_column=None),
                *document_drafts_from_dir(docs, tenant="t-docs"),
            ],
        )
    )
    assert sorted(p.topic for p in published) == [DOCUMENT_UPLOADED] * 2 + [TICKET_CREATED] * 5

    ids = {p.event_id for p in published}
    tickets = [r for r in run(_read_all(broker, TICKET_CREATED)) if r[2].get("ce_id") in ids]
    assert len(tickets) == 5
    for key, value, headers in tickets:
        decoded = env.decode_event(TICKET_CREATED, value, headers, max_bytes=1 << 20)
        assert decoded.tenant_id == "t-json"
        assert key == str(decoded.data["ticket_id"]).encode()
    documents = [r for r in run(_read_all(broker, DOCUMENT_UPLOADED)) if r[2].get("ce_id") in ids]
    uris = sorted(env.decode_event(DOCUMENT_UPLOADED, v, h, 1 << 20).data["uri"] for _, v, h in documents)
    assert uris == [(docs / "a.md").as_uri(), (docs / "b.html").as_uri()]
