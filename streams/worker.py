"""The worker's runtime: decode a micro-batch, run its workflow, publish everything, then return.

This returns only after the broker acknowledged every result, trace and dead letter of the batch,
and the agent acks a batch only after this returned and every batch taken before it was acked
(streams/inflight.py). So a committed offset never points past an event whose output is not
durable: at-least-once, without the commit-past-in-flight bug of Faust's agent ``concurrency>1``
(faust #606). Parallelism comes from batches in flight, batching inside a step, and partitions.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog

from agents import documents, tickets
from agents.deps import WorkflowDeps
from agents.outcome import BatchOutcome, InboundEvent, OutboundEvent, StepFailure, WorkItem
from agents.routing import FailureRouter, RetryPolicy, delivery_attempt
from gateway.gateway import Gateway
from gateway.local.provider import LocalProvider
from gateway.policy import PolicyStore
from gateway.providers.base import Secrets
from gateway.redact import Redactor
from gateway.semantic_cache import SemanticCache
from sinks.vectors import open_vector_store
from sinks.vectors.readonly import ReadOnlyVectorStore
from streams import envelope as env
from streams.codec import CodecError
from streams.config import Settings
from streams.inflight import Turn
from streams.memory import Trimmer
from streams.ops import REPLAYED_FROM
from streams.processed import ProcessedChangelog, ProcessedEvents, marker
from streams.topics import (
    DOCUMENT_UPLOADED,
    TICKET_CREATED,
    origin_topic,
    retry_topic,
    shadow_topic,
)
from streams.trace_batches import trace_messages

log = structlog.get_logger(__name__)

Send = Callable[[OutboundEvent], Awaitable[Awaitable[Any]]]
"""Enqueue one record; the returned awaitable resolves when the broker acknowledged it."""

Workflow = Callable[[list[WorkItem], WorkflowDeps, Turn], Awaitable[BatchOutcome]]
WORKFLOWS: dict[str, Workflow] = {
    TICKET_CREATED: tickets.triage,
    DOCUMENT_UPLOADED: documents.enrich,
}
VERSIONS: dict[str, Callable[[WorkflowDeps], str]] = {
    TICKET_CREATED: tickets.workflow_version,
    DOCUMENT_UPLOADED: documents.workflow_version,
}


@dataclass
class WorkerStats:
    consumed: Counter[str] = field(default_factory=Counter)
    results: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    already_done: Counter[str] = field(default_factory=Counter)
    traces: int = 0


class WorkerRuntime:
    def __init__(
        self,
        deps: WorkflowDeps,
        router: FailureRouter | None = None,
        processed: ProcessedChangelog | None = None,
    ) -> None:
        self.deps = deps
        self.processed = processed
        self.router = router or FailureRouter(
            RetryPolicy(
                max_attempts=deps.settings.retry_max_attempts,
                backoff_base_s=deps.settings.retry_backoff_base_s,
                backoff_cap_s=deps.settings.retry_backoff_cap_s,
            )
        )
        self.stats = WorkerStats()
        self._trimmer = Trimmer(deps.settings.malloc_trim_interval_s)

    @classmethod
    async def create(cls, settings: Settings) -> WorkerRuntime:
        provider = await asyncio.to_thread(LocalProvider, settings.models_dir, settings.intent_model)
        vectors = await asyncio.to_thread(
            open_vector_store,
            qdrant_url=settings.qdrant_url,
            path=settings.qdrant_path,
            collection=settings.qdrant_collection,
            flush_interval_s=settings.qdrant_flush_interval_s,
            isolated=settings.qdrant_edge_isolated,
        )
        vectors.ensure_collection(provider.embedder.dimensions)
        if settings.shadow:
            vectors = ReadOnlyVectorStore(vectors)
        http = httpx.AsyncClient(follow_redirects=True, max_redirects=5)
        policy = PolicyStore(settings.gateway_policy_file)
        semantic = None
        if any(tp.semantic_threshold is not None for tp in policy.policy.tasks.values()):
            cache_store = await asyncio.to_thread(
                open_vector_store,
                qdrant_url=settings.qdrant_url,
                path=settings.data_dir / "qdrant-gateway-cache",
                collection="gateway_cache",
                flush_interval_s=settings.qdrant_flush_interval_s,
            )
            semantic = SemanticCache(cache_store, provider.embedder.embed, provider.embedder.dimensions)
        gateway = Gateway(
            provider,
            policy=policy,
            secrets=Secrets(settings.gateway_secrets_file),
            semantic_cache=semantic,
            redactor=Redactor(settings.redact_patterns),
        )
        processed = None
        if settings.skip_processed_events and not settings.shadow:
            table = ProcessedEvents(settings.processed_window_s, settings.processed_max_entries)
            processed = ProcessedChangelog(settings.kafka_bootstrap, table)
            await processed.start()  # before the first event: a redelivery right after a crash is known
        deps = WorkflowDeps(settings=settings, gateway=gateway, vectors=vectors, http=http)
        return cls(deps, processed=processed)

    async def close(self) -> None:
        if self.processed is not None:
            await self.processed.stop()
        await self.deps.http.aclose()
        await self.deps.gateway.aclose()
        self.deps.vectors.close()

    def decode(self, topic: str, batch: Sequence[InboundEvent]) -> tuple[list[WorkItem], BatchOutcome]:
        return decode_batch(topic, batch, self.deps.settings.max_event_bytes)

    async def handle(
        self, topic: str, batch: Sequence[InboundEvent], send: Send, turn: Turn | None = None
    ) -> BatchOutcome:
        """Process one batch and wait until all its output is acknowledged by the broker. ``turn``
        orders the batch's order-sensitive stages behind the batch taken before it. ``topic`` may be
        an input topic's retry topic: its events run the input topic's workflow."""
        topic = origin_topic(topic)
        self.stats.consumed[topic] += len(batch)
        started = time.perf_counter()
        items, outcome = self.decode(topic, batch)
        items = self._not_done_yet(topic, items)
        if items:
            try:
                done = await WORKFLOWS[topic](items, self.deps, turn or Turn())
            except Exception as exc:  # a bug in a workflow: every item of the batch is dead-lettered
                log.exception("workflow_crashed", topic=topic, size=len(items))
                done = BatchOutcome(
                    failures=[
                        (item.inbound, StepFailure.from_exception("workflow", exc, retryable=True))
                        for item in items
                    ]
                )
            outcome.results.extend(done.results)
            outcome.reviews.extend(done.reviews)
            outcome.failures.extend(done.failures)
            outcome.traces.extend(done.traces)
        worked = time.perf_counter()
        await self.publish(topic, outcome, send)
        self._trimmer.maybe_trim()
        log.debug(
            "batch_done",
            topic=topic,
            size=len(batch),
            work_ms=round(1000 * (worked - started), 1),
            publish_ms=round(1000 * (time.perf_counter() - worked), 1),
        )
        return outcome

    def _not_done_yet(self, topic: str, items: list[WorkItem]) -> list[WorkItem]:
        """Drop redelivered events whose result under this workflow version is already durable. A
        replay (``x-riverbed-replayed-from``) always runs: re-running is why an operator replays."""
        if self.processed is None or not items:
            return items
        version = VERSIONS[topic](self.deps)
        table = self.processed.table
        todo = [
            item
            for item in items
            if REPLAYED_FROM in env.header_map(item.inbound.headers)
            or env.result_event_id(item.envelope.id, version) not in table
        ]
        if len(todo) < len(items):
            self.stats.already_done[topic] += len(items) - len(todo)
            log.info("already_processed_skipped", topic=topic, events=len(items) - len(todo), version=version)
        return todo

    async def publish(self, topic: str, outcome: BatchOutcome, send: Send) -> None:
        if self.deps.settings.shadow:
            await self._publish_shadow(topic, outcome, send)
        else:
            await self._publish(topic, outcome, send)

    async def _publish(self, topic: str, outcome: BatchOutcome, send: Send) -> None:
        pending: list[Awaitable[Any]] = []
        for result in [*outcome.results, *outcome.reviews]:
            pending.append(await send(result))
        for message in trace_messages(outcome.traces):
            pending.append(await send(message))
        for inbound, failure in outcome.failures:
            log.warning(
                "event_failed",
                topic=topic,
                partition=inbound.partition,
                offset=inbound.offset,
                step=failure.step,
                error_class=failure.error_class,
                error=failure.message[:300],
                retryable=failure.retryable,
            )
            routed = self.router.route(inbound, failure)
            (self.stats.retried if routed.topic == retry_topic(topic) else self.stats.dead_letters)[
                topic
            ] += 1
            pending.append(await send(routed))
        await asyncio.gather(*pending)
        if self.processed is not None and outcome.results:
            # Only now are the results durable, so only now may the table say they exist. The
            # markers' acks are not waited for: a lost marker only means a redelivered event pays
            # its model calls again (at-least-once, deduplicated downstream), while waiting put a
            # second broker round trip on every batch's path (~20 ms of ~700, 2026-11-24).
            done = [result.event_id for result in outcome.results]
            for result_id in done:
                acked = asyncio.ensure_future(await send(marker(result_id)))
                acked.add_done_callback(_log_lost_marker)
            self.processed.record(done)
        self.stats.results[topic] += len(outcome.results)
        self.stats.traces += len(outcome.traces)

    async def _publish_shadow(self, topic: str, outcome: BatchOutcome, send: Send) -> None:
        """A shadow run's results go to the shadow result topics and its traces to the trace topic
        (their workflow version ends in +shadow); nothing reaches production's review, retry or DLQ
        topics. A failed event is only logged: the comparison reports it as missing."""
        shadowed = [replace(r, topic=shadow_topic(r.topic)) for r in outcome.results]
        await self._publish(topic, BatchOutcome(results=shadowed, traces=outcome.traces), send)
        for inbound, failure in outcome.failures:
            self.stats.dead_letters[topic] += 1
            log.warning(
                "shadow_event_failed", offset=inbound.offset, step=failure.step, error=failure.message[:300]
            )


def _log_lost_marker(acked: asyncio.Future[Any]) -> None:
    if not acked.cancelled() and (exc := acked.exception()) is not None:
        log.warning("processed_marker_lost", error=repr(exc))


def record_time(inbound: InboundEvent) -> datetime | None:
    """The record's Kafka timestamp: the same on every redelivery of that record."""
    if inbound.timestamp_ms is None:
        return None
    return datetime.fromtimestamp(inbound.timestamp_ms / 1000, UTC)


def decode_batch(
    topic: str, batch: Sequence[InboundEvent], max_event_bytes: int
) -> tuple[list[WorkItem], BatchOutcome]:
    """Events that decode become work items; every other one a non-retryable failure, whatever its
    bytes. ``topic`` is an input topic; events of its retry topic decode the same way."""
    outcome = BatchOutcome()
    items: list[WorkItem] = []
    for inbound in batch:
        headers = env.header_map(inbound.headers)
        try:
            envelope = env.decode_event(
                topic, inbound.value, headers, max_event_bytes, fallback_time=record_time(inbound)
            )
        except (CodecError, env.EnvelopeError) as exc:
            outcome.failures.append((inbound, StepFailure.from_exception("decode", exc, retryable=False)))
            continue
        items.append(WorkItem(inbound, envelope, attempt=delivery_attempt(headers)))
    return items, outcome
