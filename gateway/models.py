"""Typed requests and responses of the gateway. Callers name a task, never a provider."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from typing import Any

from gateway.errors import GatewayError
from gateway.providers.base import Message

__all__ = [
    "CallContext",
    "Entity",
    "GatewayError",
    "Message",
    "ModelRequest",
    "ModelResponse",
    "Prediction",
    "Task",
]


class Task(StrEnum):
    """The tasks the workflows use. The policy file may define more (any string), e.g. draft_reply."""

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
    """``restricted`` data may only go to routes marked local."""
    attempt: int = 1
    """The event's delivery attempt; each attempt's model calls leave traces of their own."""


@dataclass(frozen=True)
class ModelRequest:
    task: str
    context: CallContext
    text: str = ""
    parts: tuple[str, ...] = ()
    """Multi-part input (a document's chunks); when empty the input is ``text`` alone."""
    messages: tuple[Message, ...] = ()
    """Chat input; when empty, chat routes get the task's system prompt and ``text`` as the user turn."""
    json_schema: dict[str, Any] | None = None
    """Structured output: the answer must be JSON valid against this schema."""
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.parts or (self.text,)

    @cached_property
    def prompt_bytes(self) -> int:
        """UTF-8 size of the prompt: the worst-case token bound of budgets and rate limits, needed
        for the reservation and again for every attempt's rate-limit check."""
        texts = [m.content for m in self.messages] if self.messages else list(self.inputs)
        return sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)


@dataclass(frozen=True)
class ProviderResult:
    """What the local provider returns for one input; the gateway adds timing, cost and trace."""

    output: Any
    input_tokens: int
    output_tokens: int = 0
    cached: bool = False


@dataclass(frozen=True)
class ModelResponse:
    task: str
    output: Any
    """Text, parsed JSON (structured output), vectors, or a local model's typed result."""
    provider: str
    model: str
    route: str
    input_tokens: int
    output_tokens: int
    latency_ms: float
    cost_usd: Decimal | None
    cache_status: str
    """miss | hit (exact cache) | semantic_hit | coalesced (shared another caller's call)."""
    attempts: int
    trace_id: str
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(frozen=True)
class Prediction:
    """A classification, whoever made it: the local heads and remote routes both answer this."""

    label: str
    confidence: float  # calibrated max probability (remote routes: the model's own estimate)
    top: tuple[tuple[str, float], ...]  # up to a few (label, probability), most probable first


@dataclass(frozen=True)
class Entity:
    label: str
    text: str
    start: int
    end: int
