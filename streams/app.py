"""The Faust app: one agent per input topic, each consuming micro-batches.

Agents run with concurrency=1 (see streams/worker.py for why that is the safe choice); the worker
scales by partitions. Topics are raw bytes here because decoding is part of the workflow: a value
that fails to decode must become a dead letter, not a Faust deserialisation crash.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import faust
import structlog

from agents.outcome import InboundEvent, OutboundEvent
from streams.config import Settings
from streams.topics import DOCUMENT_UPLOADED, TICKET_CREATED
from streams.worker import WorkerRuntime

log = structlog.get_logger(__name__)


def create_app(settings: Settings) -> faust.App:
    brokers = ";".join(settings.kafka_bootstrap.split(","))
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{brokers}",
        datadir=str(settings.faust_dir),
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        stream_wait_empty=False,
        processing_guarantee="at_least_once",
        broker_commit_interval=1.0,
    )
    runtime_lock = asyncio.Lock()
    holder: dict[str, WorkerRuntime] = {}

    async def runtime() -> WorkerRuntime:
        async with runtime_lock:
            if "rt" not in holder:
                holder["rt"] = await WorkerRuntime.create(settings)
            return holder["rt"]

    async def send(out: OutboundEvent) -> Awaitable[Any]:
        return await app.producer.send(out.topic, out.key, out.value, None, None, out.headers)

    def register(topic_name: str, batch_size: int) -> None:
        topic = app.topic(
            topic_name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )

        async def consume(stream: Any) -> None:
            """``stream`` is a faust Stream; its stubs lack take_events, hence Any."""
            try:
                rt = await runtime()
            except Exception as exc:
                # Without models or the vector store the worker can do nothing: exit non-zero so a
                # supervisor restarts it and an operator sees why, rather than idling while lagging.
                log.critical("worker_runtime_failed", error=repr(exc))
                await app.crash(exc)
                return
            async for events in stream.take_events(batch_size, settings.worker_batch_window_s):
                await rt.handle(topic_name, [_inbound(e) for e in events], send)

        consume.__name__ = f"consume_{topic_name.replace('.', '_')}"
        app.agent(topic, name=consume.__name__, concurrency=1)(consume)

    register(TICKET_CREATED, settings.worker_batch_size)
    register(DOCUMENT_UPLOADED, settings.document_batch_size)

    @app.on_before_shutdown.connect  # type: ignore[misc, arg-type]
    def _close(app: faust.App, **kwargs: Any) -> None:
        if "rt" in holder:
            holder["rt"].deps.vectors.close()

    return app


def _inbound(event: Any) -> InboundEvent:
    msg = event.message
    headers = msg.headers or ()
    if isinstance(headers, dict):
        headers = list(headers.items())
    return InboundEvent(
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=msg.key,
        value=msg.value,
        headers=tuple((k, v or b"") for k, v in headers),
        timestamp_ms=int(msg.timestamp * 1000) if msg.timestamp else None,
    )
