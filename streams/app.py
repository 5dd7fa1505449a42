"""The Faust app: one agent per input topic, each consuming micro-batches.

Agents run with Faust concurrency=1 and keep several batches in flight themselves, acked in order
(streams/inflight.py says why that is safe where Faust's concurrency>1 is not); the worker scales
further by partitions. Topics are raw bytes here because decoding is part of the workflow: a value
that fails to decode must become a dead letter, not a Faust deserialisation crash.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import time
from collections import Counter
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from typing import Any

import faust
import structlog

from agents.outcome import InboundEvent, OutboundEvent
from agents.routing import due_at
from streams import envelope as env
from streams.config import Settings
from streams.faust_compat import install_batch_fill_without_yield
from streams.inflight import InFlightBatches, Turn
from streams.memory import freeze_startup_heap
from streams.reachability import wait_until_unreachable
from streams.stall import PartitionState, StallWatch
from streams.topics import DOCUMENT_UPLOADED, TICKET_CREATED, retry_topic, shadow_topic
from streams.worker import Send, WorkerRuntime

log = structlog.get_logger(__name__)
RETRY_CAP_S = 30.0
PRODUCER_MAX_BATCH_BYTES = 256 * 1024
"""A batch publishes ~5 records per ticket (result + one trace per step): bigger producer batches
mean fewer requests for the worker and the broker to handle, and compress better."""
EXIT_UNDRAINED = 75  # EX_TEMPFAIL: a supervisor should restart us; the batch will be redelivered


def create_app(settings: Settings) -> faust.App:
    install_batch_fill_without_yield()
    brokers = ";".join(settings.kafka_bootstrap.split(","))
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{brokers}",
        datadir=str(settings.faust_dir),
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_max_batch_size=PRODUCER_MAX_BATCH_BYTES,
        producer_linger=0.005,
        producer_compression_type=settings.producer_compression_type,
        stream_wait_empty=False,
        processing_guarantee="at_least_once",
        broker_commit_interval=1.0,
    )
    runtime_lock = asyncio.Lock()
    holder: dict[str, WorkerRuntime] = {}

    async def runtime() -> WorkerRuntime:
        async with runtime_lock:
            if "rt" not in holder:
                holder["rt"] = await _start_runtime(settings)
            return holder["rt"]

    async def send(out: OutboundEvent) -> Awaitable[Any]:
        return await app.producer.send(out.topic, out.key, out.value, None, None, out.headers)

    def register(topic_name: str, batch_size: int) -> None:
        topic = app.topic(
            topic_name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )

        async def consume(stream: Any) -> None:
            """``stream`` is a faust Stream; its stubs lack noack_take, hence Any."""
            try:
                rt = await runtime()
            except Exception as exc:
                # Without models or the vector store the worker can do nothing: exit non-zero so a
                # supervisor restarts it and an operator sees why, rather than idling while lagging.
                log.critical("worker_runtime_failed", error=repr(exc))
                await app.crash(exc)
                return
            batches = InFlightBatches(settings.worker_inflight_batches, ack=functools.partial(_ack, stream))
            try:
                async for events in stream.noack_take(batch_size, settings.worker_batch_window_s):
                    batch = [_inbound(e) for e in events]
                    await batches.submit(
                        events, functools.partial(_when_due_until_done, rt, topic_name, batch, send, settings)
                    )
            except asyncio.CancelledError:
                await _drain_or_exit(batches, topic_name, settings)
                raise

        consume.__name__ = f"consume_{topic_name.replace('.', '_')}"
        app.agent(topic, name=consume.__name__, concurrency=1)(consume)

    for topic_name, batch_size in consumed_topics(settings):
        register(topic_name, batch_size)

    reseek_stalled_partitions(app, settings)

    @app.on_before_shutdown.connect  # type: ignore[misc, arg-type]
    def _close(app: faust.App, **kwargs: Any) -> None:
        bound_consumer_thread_stop(app, settings.shutdown_consumer_timeout_s)
        if "rt" in holder:
            holder["rt"].deps.vectors.close()

    return app


def bound_consumer_thread_stop(app: faust.App, timeout_s: float) -> None:
    """Give Faust's consumer thread ``timeout_s`` to stop instead of mode's 60 s.

    Why: with the broker down, the thread cannot leave its group or close cleanly and waits out the
    whole timeout, so a SIGTERMed worker took 62 s to exit (2026-11-24). Nothing is committed while
    the broker is down, so stopping sooner loses nothing: the uncommitted events are redelivered.
    With the broker up the thread stops in well under a second and never reaches the bound. The
    thread is a private attribute of faust-streaming's consumer (pinned <0.16; the SIGTERM test in
    tests/test_broker_restart.py fails if this stops working)."""
    consumer = getattr(app, "_consumer", None)
    thread = getattr(consumer, "_thread", None)
    if thread is not None and hasattr(thread, "shutdown_timeout"):
        thread.shutdown_timeout = timeout_s


def reseek_stalled_partitions(app: faust.App, settings: Settings) -> None:
    """A timer that reads a stalled input partition again from its commit (streams/stall.py)."""
    if settings.stall_reseek_s <= 0:
        return
    watch = StallWatch(settings.stall_reseek_s)
    inputs = {name for name, _ in consumed_topics(settings)}

    @app.timer(max(1.0, settings.stall_reseek_s / 4))  # type: ignore[untyped-decorator]
    async def reseek() -> None:
        consumer = app.consumer
        for state in watch.stalled(partition_states(consumer, inputs), time.monotonic()):
            if state.committed is None:
                continue
            log.warning(
                "partition_stalled_reseeking",
                topic=state.partition.topic,
                partition=state.partition.partition,
                committed=state.committed,
                end=state.end,
                idle_s=settings.stall_reseek_s,
            )
            try:
                await consumer.seek(state.partition, state.committed)
            except Exception as exc:
                # e.g. a rebalance took the partition meanwhile; raised here it would stop the timer
                log.warning("partition_reseek_failed", partition=str(state.partition), error=repr(exc))


def partition_states(consumer: Any, topics: set[str]) -> list[PartitionState]:
    """What StallWatch needs, per assigned input partition. Faust keeps the committed offsets and
    the messages not yet acknowledged (fetched, buffered or in a batch) in private attributes; the
    pin on faust-streaming (<0.16) keeps them where they are read here."""
    committed: dict[Any, int] = getattr(consumer, "_committed_offset", {})
    unacked = Counter(message.tp for message in list(getattr(consumer, "_unacked_messages", ())))
    return [
        PartitionState(tp, committed.get(tp), consumer.highwater(tp), unacked[tp])
        for tp in consumer.assignment()
        if tp.topic in topics
    ]


async def _start_runtime(settings: Settings) -> WorkerRuntime:
    """The models and stores, then the heap they fill frozen out of full collections
    (streams/memory.py says why)."""
    rt = await WorkerRuntime.create(settings)
    if settings.gc_freeze_startup:
        log.info("startup_heap_frozen", objects=freeze_startup_heap())
    return rt


def consumed_topics(settings: Settings) -> list[tuple[str, int]]:
    """Each input topic and its retry topic, with the batch size of its workflow; a shadow worker
    reads only the shadow copies of the inputs (its failures are counted, not retried)."""
    topics = []
    for input_topic, batch_size in (
        (TICKET_CREATED, settings.worker_batch_size),
        (DOCUMENT_UPLOADED, settings.document_batch_size),
    ):
        if settings.shadow:
            topics.append((shadow_topic(input_topic), batch_size))
        else:
            topics += [(input_topic, batch_size), (retry_topic(input_topic), batch_size)]
    return topics


async def _ack(stream: Any, events: Sequence[Any]) -> None:
    for event in events:
        await stream.ack(event)


async def _drain_or_exit(batches: InFlightBatches, topic: str, settings: Settings) -> None:
    """On shutdown the batches in flight get ``shutdown_drain_s`` to finish and be acked, or less
    once no broker has accepted a connection for ``shutdown_broker_gone_s``: then nothing can be
    acked and waiting only keeps the operator waiting. A retried batch still waiting for its due
    time gives up at once (``Turn.wait_to_start``) and stays unacked. If batches are still running
    when the wait ends, the process exits at once (75), before Faust can commit: they are then
    redelivered, exactly as after a crash."""
    in_flight = batches.in_flight
    drained = asyncio.ensure_future(batches.drain(settings.shutdown_drain_s))
    waiters: set[asyncio.Future[Any]] = {drained}
    gone: asyncio.Future[None] | None = None
    if in_flight and settings.shutdown_broker_gone_s > 0:
        gone = asyncio.ensure_future(
            wait_until_unreachable(settings.kafka_bootstrap, settings.shutdown_broker_gone_s)
        )
        waiters.add(gone)
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            if not waiter.done():
                waiter.cancel()
    if drained.done() and not drained.cancelled():
        if drained.result():
            return
        if not batches.in_flight:
            # Nothing runs any more: the batches left unacked failed or gave up before starting, and
            # can never be acked now. Faust may stop normally (leaving its group, which an abrupt
            # exit would not) and commit: it commits only acked events, so they are redelivered.
            log.warning("batches_left_unacked", topic=topic, in_flight_at_stop=in_flight)
            return
    reason = "broker_unreachable" if gone is not None and gone.done() else "deadline"
    log.critical("batches_not_drained_exiting", topic=topic, in_flight=in_flight, reason=reason)
    os._exit(EXIT_UNDRAINED)


async def _when_due_until_done(
    rt: WorkerRuntime, topic: str, batch: list[InboundEvent], send: Send, settings: Settings, turn: Turn
) -> None:
    """A retried event waits for its ``next-attempt-at`` first. Events of a retry partition arrive
    roughly in due order, so waiting for the batch's latest due time holds none back for long; the
    wait is capped at the longest backoff so a clock skew or a bad header cannot park a partition."""
    due = [when for e in batch if (when := due_at(env.header_map(e.headers))) is not None]
    if due:
        wait_s = (max(due) - datetime.now(UTC)).total_seconds()
        if wait_s > 0:
            await turn.wait_to_start(min(wait_s, settings.retry_backoff_cap_s))
    await _until_done(rt, topic, batch, send, turn)


async def _until_done(
    rt: WorkerRuntime, topic: str, batch: list[InboundEvent], send: Send, turn: Turn
) -> None:
    """Return only with the batch's output acknowledged by the broker. A failed batch (e.g. the
    broker refused a publish) is retried with capped backoff rather than raised: result, trace and
    point ids are deterministic, so a retry replaces rather than duplicates."""
    for attempt in itertools.count():
        try:
            await rt.handle(topic, batch, send, turn)
            return
        except Exception as exc:
            delay = min(RETRY_CAP_S, 0.5 * 2**attempt)
            log.error(
                "batch_failed_retrying",
                topic=topic,
                size=len(batch),
                attempt=attempt + 1,
                retry_in_s=delay,
                error=repr(exc),
            )
            await asyncio.sleep(delay)


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
