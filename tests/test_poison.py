"""No input crashes the worker: whatever bytes and headers arrive, decoding yields either a work item
or a failure, and the failure routes to the retry or dead-letter topic with the original bytes."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.outcome import InboundEvent
from agents.routing import FailureRouter, RetryPolicy
from streams import envelope as env
from streams.topics import DOCUMENT_UPLOADED, EVENT_TYPES, TICKET_CREATED, dlq_topic, retry_topic
from streams.worker import decode_batch

MAX_BYTES = 4096


def _valid_ticket() -> bytes:
    value, _, _ = env.encode_event(
        TICKET_CREATED,
        {
            "tenant_id": "acme",
            "ticket_id": "T1",
            "subject": "card",
            "body": "my card has not arrived",
            "channel": "email",
            "customer_id": None,
            "sensitivity": "internal",
            "created_at": datetime(2026, 11, 22, tzinfo=UTC),
            "metadata": {},
        },
    )
    return value


VALID = _valid_ticket()


@st.composite
def values(draw: st.DrawFn) -> bytes | None:
    """Random bytes, valid Avro with flipped bytes, truncated or padded Avro, oversize, or nothing."""
    kind = draw(st.sampled_from(["random", "flipped", "truncated", "padded", "oversize", "none"]))
    if kind == "random":
        return draw(st.binary(max_size=600))
    if kind == "flipped":
        data = bytearray(VALID)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        return bytes(data)
    if kind == "truncated":
        return VALID[: draw(st.integers(0, len(VALID) - 1))]
    if kind == "padded":
        return VALID + draw(st.binary(min_size=1, max_size=20))
    if kind == "oversize":
        return b"\x00" * (MAX_BYTES + 1)
    return None


header_names = st.sampled_from(
    ["ce_id", "ce_type", "ce_source", "ce_specversion", "ce_tenantid", "ce_time", "x-riverbed-attempts", "zz"]
)
header_values = st.one_of(
    st.binary(max_size=40),  # invalid UTF-8 included
    st.sampled_from([EVENT_TYPES[TICKET_CREATED].encode(), b"acme", b"1.0", b"", b"-3", b"2026-13-45"]),
)


@settings(max_examples=400, deadline=None)
@given(
    value=values(),
    headers=st.lists(st.tuples(header_names, header_values), max_size=8),
    topic=st.sampled_from([TICKET_CREATED, DOCUMENT_UPLOADED]),
)
def test_any_bytes_and_headers_become_an_item_or_a_routed_failure(
    value: bytes | None, headers: list[tuple[str, bytes]], topic: str
) -> None:
    inbound = InboundEvent(topic, 0, 1, b"k", value, tuple(headers))
    items, outcome = decode_batch(topic, [inbound], MAX_BYTES)
    assert len(items) + len(outcome.failures) == 1
    for failed, failure in outcome.failures:
        assert failure.step == "decode" and failure.error_class and not failure.retryable
        routed = FailureRouter(RetryPolicy(max_attempts=3)).route(failed, failure)
        assert routed.topic in {dlq_topic(topic), retry_topic(topic)}
        assert routed.value == (value or b"")
    for item in items:
        assert item.envelope.tenant_id.strip() and item.attempt >= 1


def test_a_valid_event_among_garbage_still_decodes() -> None:
    headers = [
        ("ce_id", b"e1"),
        ("ce_type", EVENT_TYPES[TICKET_CREATED].encode()),
        ("ce_source", b"urn:test"),
        ("ce_specversion", b"1.0"),
    ]
    batch = [
        InboundEvent(TICKET_CREATED, 0, 1, b"k", b"\xff\x00garbage", tuple(headers)),
        InboundEvent(TICKET_CREATED, 0, 2, b"k", VALID, tuple(headers)),
        InboundEvent(TICKET_CREATED, 0, 3, b"k", VALID[:-2], tuple(headers)),
    ]
    items, outcome = decode_batch(TICKET_CREATED, batch, MAX_BYTES)
    assert [i.inbound.offset for i in items] == [2]
    assert [f.offset for f, _ in outcome.failures] == [1, 3]
