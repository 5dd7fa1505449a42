"""1,000 malformed events mixed into 10,000 good tickets, through one real worker process: every good
ticket gets its result, every bad event is in the DLQ with a reason and its original bytes, and the
worker never stops."""

from __future__ import annotations

import csv
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from streams import envelope as env
from streams import processes
from streams.config import PROJECT_ROOT, Settings
from streams.offsets import end_offsets, reader_from
from streams.topics import DOCUMENT_UPLOADED, TICKET_CREATED, TICKET_TRIAGED, dlq_topic
from tests.conftest import run

GOOD = 10_000
BAD = 1_000
# Below the broker's own message limit (~1 MB, like Kafka's default, which refuses a 10 MB event at
# the producer already), so oversize events reach the worker and meet Riverbed's limit.
MAX_EVENT_BYTES = 64 * 1024


def _ticket(n: int, text: str, tenant: str = "poison") -> dict[str, object]:
    return {
        "tenant_id": tenant,
        "ticket_id": f"P{n:05d}",
        "subject": None,
        "body": text,
        "channel": "email",
        "customer_id": None,
        "sensitivity": "internal",
        "created_at": datetime.now(UTC),
        "metadata": {},
    }


def _with_id(headers: list[tuple[str, bytes]], event_id: str) -> list[tuple[str, bytes]]:
    return [(k, event_id.encode() if k == "ce_id" else v) for k, v in headers]


def _bad_event(n: int, rng: random.Random) -> tuple[str, bytes, list[tuple[str, bytes]], str]:
    """(event id, value, headers, kind) for the n-th malformed event; six kinds in turn."""
    event_id = f"bad-{n:04d}"
    value, headers, _ = env.encode_event(TICKET_CREATED, _ticket(90_000 + n, "my card was declined"))
    headers = _with_id(headers, event_id)
    kind = ("random", "wrong-schema", "truncated", "huge", "bad-utf8", "no-tenant")[n % 6]
    if kind == "random":
        value = rng.randbytes(rng.randint(1, 300))
    elif kind == "wrong-schema":
        doc = {
            "tenant_id": "poison",
            "document_id": f"d{n}",
            "uri": "file:///nope",
            "content_type": None,
            "title": None,
            "sensitivity": "internal",
            "uploaded_at": datetime.now(UTC),
            "metadata": {},
        }
        value, _, _ = env.encode_event(DOCUMENT_UPLOADED, doc)
    elif kind == "truncated":
        value = value[: rng.randint(1, len(value) - 1)]
    elif kind == "huge":
        value = value + b"\x00" * (3 * MAX_EVENT_BYTES)
    elif kind == "bad-utf8":
        text = "my card was declined"
        at = value.index(text.encode())
        value = value[:at] + b"\xff\xfe" + value[at + 2 :]
    else:
        value, headers, _ = env.encode_event(TICKET_CREATED, _ticket(90_000 + n, "hello", tenant=""))
        headers = [(k, v) for k, v in _with_id(headers, event_id) if k != "ce_tenantid"]
    return event_id, value, headers, kind


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_poison_messages_never_stop_the_worker_and_never_vanish(
    broker: Settings, trained_models: Path, tmp_path: Path
) -> None:
    settings = broker.model_copy(update={"app_id": "riverbed-poison", "max_event_bytes": MAX_EVENT_BYTES})
    with (PROJECT_ROOT / "infra/datasets/banking77/test.csv").open(newline="", encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    rng = random.Random(1000)
    good = [env.encode_event(TICKET_CREATED, _ticket(i, texts[i % len(texts)])) for i in range(GOOD)]
    bad = [_bad_event(n, rng) for n in range(BAD)]
    mixed: list[tuple[bytes, list[tuple[str, bytes]]]] = [(v, h) for v, h, _ in good]
    for _, value, headers, _ in bad:
        mixed.insert(rng.randint(0, len(mixed)), (value, headers))
    good_ids = {event_id for _, _, event_id in good}
    bad_ids = {event_id for event_id, _, _, _ in bad}
    start = run(end_offsets(settings.kafka_bootstrap, [TICKET_TRIAGED, dlq_topic(TICKET_CREATED)]))

    async def publish_all() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, acks="all", max_request_size=8 * 1024 * 1024
        )
        await producer.start()
        try:
            pending = [await producer.send(TICKET_CREATED, v, key=b"p", headers=h) for v, h in mixed]
            for fut in pending:
                await fut
        finally:
            await producer.stop()

    results: set[str] = set()
    dead: dict[str, tuple[bytes, dict[str, str]]] = {}

    async def observe(timeout_s: float) -> None:
        consumer = await reader_from(settings.kafka_bootstrap, start)
        deadline = time.monotonic() + timeout_s
        try:
            while not (good_ids <= results and bad_ids <= dead.keys()) and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=300, max_records=5000)).values():
                    for r in records:
                        h = env.header_map(r.headers)
                        if r.topic == TICKET_TRIAGED:
                            results.add(h.get("ce_causationid", ""))
                        else:
                            dead[h.get("ce_id", "")] = (r.value, h)
        finally:
            await consumer.stop()

    run(publish_all())
    worker = processes.spawn(settings, "worker", ["worker"], log_path=tmp_path / "worker.log")
    try:
        run(observe(timeout_s=420))
        assert worker.poll() is None, f"the worker stopped; see {tmp_path / 'worker.log'}"
    finally:
        clean = processes.stop(worker.pid, timeout_s=60)
    assert clean, "the worker did not stop cleanly on SIGTERM"

    assert len(good_ids - results) == 0, f"{len(good_ids - results)} good tickets without a result"
    assert not good_ids & dead.keys()
    missing = bad_ids - dead.keys()
    assert not missing, f"{len(missing)} malformed events neither in the DLQ nor anywhere else"
    assert not bad_ids & results
    by_id = {event_id: (value, kind) for event_id, value, _, kind in bad}
    for event_id in bad_ids:
        value, headers = dead[event_id]
        assert value == by_id[event_id][0], f"{by_id[event_id][1]} lost its original bytes"
        assert headers["x-riverbed-step"] == "decode" and headers["x-riverbed-retryable"] == "false"
        assert headers["x-riverbed-error-class"] in {"CodecError", "EnvelopeError"}
        assert headers["x-riverbed-error-message"]
