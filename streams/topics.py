"""The topic registry: every topic Riverbed reads or writes, its schema and partition count.

Keeping the list in one place lets ``stack up`` create topics, the codec find schemas and the
CLI validate names without each module re-deriving ``<entity>.<event>.v<N>`` conventions.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicSpec:
    name: str
    event_type: str
    schema: str | None
    """Avro schema file stem under schemas/avro, or None for topics holding foreign bytes."""
    partitions: int | None = None
    """Fixed partition count, or None to use the configured default."""
    compacted: bool = False
    """Keep the newest record per key forever instead of deleting by age (a changelog)."""


DOCUMENT_UPLOADED = "document.uploaded.v1"
TICKET_CREATED = "ticket.created.v1"
DOCUMENT_ENRICHED = "document.enriched.v1"
TICKET_TRIAGED = "ticket.triaged.v1"
AI_TRACES = "ai.traces.v1"
TICKET_REVIEW = "ticket.review.v1"
"""Ticket results a human must confirm (low confidence or a high-risk label); the value is the same
ticket.triaged.v1 record, the reasons are in ``x-riverbed-review-reasons``."""
PROCESSED_EVENTS = "riverbed.processed.v1"
"""Changelog of the processed-events table (streams/processed.py): one record per durable result."""

INPUT_TOPICS = (DOCUMENT_UPLOADED, TICKET_CREATED)
RESULT_TOPICS = (DOCUMENT_ENRICHED, TICKET_TRIAGED)

EVENT_TYPES: dict[str, str] = {
    DOCUMENT_UPLOADED: "io.riverbed.document.uploaded.v1",
    TICKET_CREATED: "io.riverbed.ticket.created.v1",
    DOCUMENT_ENRICHED: "io.riverbed.document.enriched.v1",
    TICKET_TRIAGED: "io.riverbed.ticket.triaged.v1",
    AI_TRACES: "io.riverbed.ai.trace.v1",
    TICKET_REVIEW: "io.riverbed.ticket.review.v1",
}
SCHEMAS: dict[str, str] = {TICKET_REVIEW: TICKET_TRIAGED}
"""Topics whose values use another topic's schema (by default a topic's schema is its own name)."""


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


def retry_topic(topic: str) -> str:
    return f"{topic}.retry"


def shadow_topic(topic: str) -> str:
    """Where a shadow run reads replayed inputs and writes its results (docs/evaluation.md)."""
    return f"{topic}.shadow"


def origin_topic(topic: str) -> str:
    """The input topic an event belongs to, also when consumed from its retry or shadow topic."""
    return topic.removesuffix(".retry").removesuffix(".shadow")


def all_topics() -> list[TopicSpec]:
    """Every topic ``stack up`` creates, including the per-input retry and DLQ topics."""
    specs = [TopicSpec(name, EVENT_TYPES[name], SCHEMAS.get(name, name)) for name in EVENT_TYPES]
    for name in INPUT_TOPICS:
        specs.append(TopicSpec(retry_topic(name), EVENT_TYPES[name], name))
        specs.append(TopicSpec(dlq_topic(name), EVENT_TYPES[name], None, partitions=1))
    for name in (*INPUT_TOPICS, *RESULT_TOPICS):
        specs.append(TopicSpec(shadow_topic(name), EVENT_TYPES[name], name))
    specs.append(TopicSpec(PROCESSED_EVENTS, "io.riverbed.processed.v1", None, compacted=True))
    return specs
