"""Typed requests and responses of the gateway. Callers name a task, never a provider."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any


class Task(StrEnum):
    EMBED = "embed"
    CLASSIFY_INTENT = "classify_intent"
    CLASSIFY_TOPIC = "classify_topic"
    EXTRACT = "extract"
    SUMMARIZE = "summarize"


@dataclass(frozen=True)
class CallContext:
    """Who asked and why: carried into every trace so cost rolls up along the causation chain."""

    event_id: str
    tenant_id: str
    workflow: str
    workflow_version: str
    step: str
    event_time: datetime
    sensitivity: str = "internal"
    attempt: int = 1
    """The event's delivery attempt; each attempt's model calls leave traces of their own."""


@dataclass(frozen=True)
class ModelRequest:
    task: Task
    context: CallContext
    text: str
    parts: tuple[str, ...] = ()
    """Multi-part input (a document's chunks); when empty the input is ``text`` alone."""
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.parts or (self.text,)


@dataclass(frozen=True)
class ProviderResult:
    """What a provider returns for one input; the gateway adds timing, cost and trace."""

    output: Any
    input_tokens: int
    output_tokens: int = 0
    cached: bool = False


@dataclass(frozen=True)
class ModelResponse:
    task: Task
    output: Any
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    latency_ms: float
    cost_usd: Decimal | None
    cache_status: str
    attempts: int
    trace_id: str


@dataclass(frozen=True)
class Entity:
    label: str
    text: str
    start: int
    end: int


class GatewayError(RuntimeError):
    """Every route for a request failed; ``retryable`` tells the workflow whether to try again later."""

    def __init__(self, message: str, *, task: Task, retryable: bool) -> None:
        super().__init__(message)
        self.task = task
        self.retryable = retryable
