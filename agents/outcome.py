"""What a workflow hands back to the worker: result events to publish, failures to route, traces.

Workflows never publish or commit themselves; the worker publishes everything of a batch, waits for
the broker's acknowledgement, and only then lets the input offsets move. That keeps the
at-least-once promise in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streams.envelope import Envelope


@dataclass(frozen=True)
class InboundEvent:
    """The raw record as consumed; kept byte-for-byte so a dead letter carries the original."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class StepFailure:
    step: str
    error_class: str
    message: str
    retryable: bool

    @classmethod
    def from_exception(cls, step: str, exc: BaseException, *, retryable: bool) -> StepFailure:
        return cls(step, type(exc).__name__, str(exc)[:2000], retryable)


@dataclass(frozen=True)
class OutboundEvent:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    event_id: str


@dataclass
class BatchOutcome:
    results: list[OutboundEvent] = field(default_factory=list)
    reviews: list[OutboundEvent] = field(default_factory=list)
    """Copies of non-final results for the workflow's review topic (agents/review.py)."""
    failures: list[tuple[InboundEvent, StepFailure]] = field(default_factory=list)
    traces: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class WorkItem:
    """One event moving through a workflow: its envelope, the outputs so far and the models used."""

    inbound: InboundEvent
    envelope: Envelope
    attempt: int = 1
    """Delivery attempt: 1 the first time, n+1 after n failures sent it through the retry topic."""
    outputs: dict[str, Any] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)

    def used(self, model_key: str) -> None:
        if model_key not in self.models:
            self.models.append(model_key)
