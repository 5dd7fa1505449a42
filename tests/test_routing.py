"""Failure routing: retry topic with a due time while attempts remain, DLQ after; original bytes and
headers kept, first origin kept across retries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agents.outcome import InboundEvent, OutboundEvent, StepFailure
from agents.routing import FailureRouter, RetryPolicy, delivery_attempt, due_at
from streams.envelope import header_map

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=3, backoff_base_s=2.0, backoff_cap_s=5.0)
TIMEOUT = StepFailure("fetch", "FetchError", "timed out fetching http://x", retryable=True)


def consumed(topic: str, routed: OutboundEvent | None = None, offset: int = 7) -> InboundEvent:
    headers = tuple(routed.headers) if routed else (("ce_id", b"evt-1"), ("ce_type", b"t"))
    value = routed.value if routed else b"\x00original\xff"
    return InboundEvent(topic, 1, offset, b"key", value, headers)


def test_a_retryable_failure_goes_to_the_retry_topic_with_a_due_time() -> None:
    router = FailureRouter(POLICY, worker="w:1")
    routed = router.route(consumed("ticket.created.v1"), TIMEOUT, now=NOW)
    headers = header_map(routed.headers)
    assert routed.topic == "ticket.created.v1.retry"
    assert routed.value == b"\x00original\xff" and routed.key == b"key"
    assert headers["ce_id"] == "evt-1" and routed.event_id == "evt-1"
    assert headers["x-riverbed-attempts"] == "1"
    assert due_at(headers) == NOW + timedelta(seconds=2)
    assert delivery_attempt(headers) == 2


def test_attempts_accumulate_through_the_retry_topic_then_end_in_the_dlq() -> None:
    router = FailureRouter(POLICY, worker="w:1")
    first = router.route(consumed("ticket.created.v1"), TIMEOUT, now=NOW)
    second = router.route(consumed("ticket.created.v1.retry", first, offset=3), TIMEOUT, now=NOW)
    assert second.topic == "ticket.created.v1.retry"
    assert due_at(header_map(second.headers)) == NOW + timedelta(seconds=4)
    later = NOW + timedelta(seconds=9)
    third = router.route(consumed("ticket.created.v1.retry", second, offset=9), TIMEOUT, now=later)
    headers = header_map(third.headers)
    assert third.topic == "ticket.created.v1.dlq"
    assert headers["x-riverbed-attempts"] == "3"
    assert "x-riverbed-next-attempt-at" not in headers
    # the origin is where the event was first consumed, not the retry topic
    assert headers["x-riverbed-original-topic"] == "ticket.created.v1"
    assert headers["x-riverbed-original-offset"] == "7"
    assert headers["x-riverbed-first-failure-at"] == NOW.isoformat()
    assert headers["x-riverbed-last-failure-at"] == later.isoformat()
    # reason headers are replaced, not piled up: one of each
    names = [k for k, _ in third.headers]
    assert len(names) == len(set(names))


def test_a_non_retryable_failure_goes_straight_to_the_dlq() -> None:
    bad = StepFailure("decode", "CodecError", "truncated Avro", retryable=False)
    routed = FailureRouter(POLICY).route(consumed("document.uploaded.v1"), bad, now=NOW)
    assert routed.topic == "document.uploaded.v1.dlq"
    assert header_map(routed.headers)["x-riverbed-retryable"] == "false"


def test_backoff_doubles_and_is_capped() -> None:
    assert [POLICY.delay_s(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 5.0, 5.0]


def test_garbage_retry_headers_do_not_break_routing() -> None:
    assert delivery_attempt({"x-riverbed-attempts": "lots"}) == 1
    assert due_at({"x-riverbed-next-attempt-at": "soon"}) is None
    assert due_at({}) is None


def test_a_replay_marker_survives_failure_routing() -> None:
    requeued = InboundEvent(
        "ticket.created.v1", 0, 3, b"k", b"v", (("ce_id", b"e"), ("x-riverbed-replayed-from", b"t.dlq/0/9"))
    )
    routed = FailureRouter(POLICY).route(requeued, TIMEOUT, now=NOW)
    assert header_map(routed.headers)["x-riverbed-replayed-from"] == "t.dlq/0/9"
