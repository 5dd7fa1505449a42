"""Where a failed event goes. The seam for the retry/DLQ design: today every failure is published,
byte-for-byte, to ``<topic>.dlq`` with the reason in headers (retryable ones are marked so, for
requeue); a retry-topic router can replace this class without touching the workflows.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from typing import Protocol

from agents.outcome import InboundEvent, OutboundEvent, StepFailure
from streams.envelope import header_map
from streams.topics import dlq_topic

HEADER_PREFIX = "x-riverbed-"


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class FailureRouter(Protocol):
    def route(self, inbound: InboundEvent, failure: StepFailure) -> OutboundEvent: ...


class DeadLetterRouter:
    def __init__(self, worker: str | None = None) -> None:
        self._worker = worker or worker_id()

    def route(self, inbound: InboundEvent, failure: StepFailure) -> OutboundEvent:
        now = datetime.now(UTC).isoformat()
        original = [(k, v) for k, v in inbound.headers if not k.startswith(HEADER_PREFIX)]
        previous = header_map(inbound.headers)
        attempts = int(previous.get(f"{HEADER_PREFIX}attempts", "0") or 0) + 1
        reason = {
            "original-topic": inbound.topic,
            "original-partition": str(inbound.partition),
            "original-offset": str(inbound.offset),
            "error-class": failure.error_class,
            "error-message": failure.message,
            "step": failure.step,
            "retryable": "true" if failure.retryable else "false",
            "attempts": str(attempts),
            "first-failure-at": previous.get(f"{HEADER_PREFIX}first-failure-at", now),
            "last-failure-at": now,
            "worker-id": self._worker,
        }
        headers = original + [(HEADER_PREFIX + k, v.encode("utf-8", "replace")) for k, v in reason.items()]
        event_id = previous.get("ce_id") or f"{inbound.topic}:{inbound.partition}:{inbound.offset}"
        return OutboundEvent(
            dlq_topic(inbound.topic), inbound.key or b"", inbound.value or b"", headers, event_id
        )
