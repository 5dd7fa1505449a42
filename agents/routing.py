"""Where a failed event goes: ``<topic>.retry`` with a due time while attempts remain and the
failure may pass, else ``<topic>.dlq``. Either way the original key, value and headers travel
byte-for-byte, with the reason added as ``x-riverbed-*`` headers, so nothing is lost and an
operator can requeue it unchanged after a fix.

Publishing the failure and only then letting the offset commit (the worker's batch contract) is
what makes a retry topic safe: an event is always in exactly one of input, retry or DLQ.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from agents.outcome import InboundEvent, OutboundEvent, StepFailure
from streams.envelope import header_map
from streams.topics import dlq_topic, origin_topic, retry_topic

HEADER_PREFIX = "x-riverbed-"
ATTEMPTS = HEADER_PREFIX + "attempts"
NEXT_ATTEMPT_AT = HEADER_PREFIX + "next-attempt-at"
ERROR_CLASS = HEADER_PREFIX + "error-class"
REASON_FIELDS = (
    "original-topic",
    "original-partition",
    "original-offset",
    "error-class",
    "error-message",
    "step",
    "retryable",
    "attempts",
    "first-failure-at",
    "last-failure-at",
    "worker-id",
    "next-attempt-at",
)
"""The failure headers a routed event carries; they are replaced on every failure. Other
``x-riverbed-*`` headers (a replay's ``replayed-from``) travel on untouched."""
_REASON_HEADERS = frozenset(HEADER_PREFIX + f for f in REASON_FIELDS)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def delivery_attempt(headers: dict[str, str]) -> int:
    """1 for an event's first delivery, n+1 after n failed ones (counted in ``x-riverbed-attempts``)."""
    try:
        return max(1, int(headers.get(ATTEMPTS, "0") or 0) + 1)
    except ValueError:
        return 1


def due_at(headers: dict[str, str]) -> datetime | None:
    """When a retried event may be processed again; None when it carries no (valid) due time."""
    raw = headers.get(NEXT_ATTEMPT_AT)
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` counts every delivery, the first included: 1 means straight to the DLQ."""

    max_attempts: int = 4
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 300.0

    def delay_s(self, failed_attempt: int) -> float:
        """Exponential: base, 2·base, 4·base, … after the 1st, 2nd, 3rd failure; capped."""
        return float(min(self.backoff_cap_s, self.backoff_base_s * 2 ** (failed_attempt - 1)))


class FailureRouter:
    def __init__(self, policy: RetryPolicy | None = None, worker: str | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self._worker = worker or worker_id()

    def route(
        self, inbound: InboundEvent, failure: StepFailure, now: datetime | None = None
    ) -> OutboundEvent:
        now = now or datetime.now(UTC)
        stamp = now.isoformat()
        previous = header_map(inbound.headers)
        attempt = delivery_attempt(previous)
        topic = origin_topic(inbound.topic)
        # Where the event was first consumed: a retried event keeps its first origin.
        origin = {
            "original-topic": previous.get(HEADER_PREFIX + "original-topic", topic),
            "original-partition": previous.get(HEADER_PREFIX + "original-partition", str(inbound.partition)),
            "original-offset": previous.get(HEADER_PREFIX + "original-offset", str(inbound.offset)),
        }
        reason = {
            **origin,
            "error-class": failure.error_class,
            "error-message": failure.message,
            "step": failure.step,
            "retryable": "true" if failure.retryable else "false",
            "attempts": str(attempt),
            "first-failure-at": previous.get(HEADER_PREFIX + "first-failure-at", stamp),
            "last-failure-at": stamp,
            "worker-id": self._worker,
        }
        if failure.retryable and attempt < self.policy.max_attempts:
            due = now + timedelta(seconds=self.policy.delay_s(attempt))
            reason["next-attempt-at"] = due.isoformat()
            target = retry_topic(topic)
        else:
            target = dlq_topic(topic)
        original = [(k, v) for k, v in inbound.headers if k not in _REASON_HEADERS]
        headers = original + [(HEADER_PREFIX + k, v.encode("utf-8", "replace")) for k, v in reason.items()]
        event_id = previous.get("ce_id") or f"{inbound.topic}:{inbound.partition}:{inbound.offset}"
        return OutboundEvent(target, inbound.key or b"", inbound.value or b"", headers, event_id)
