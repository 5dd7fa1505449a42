"""The contract: every schema round-trips, and bad bytes fail with a CodecError, never anything else."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import codec
from streams import envelope as env
from streams.topics import AI_TRACES, DOCUMENT_UPLOADED, EVENT_TYPES, TICKET_CREATED

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def ticket(**over: object) -> dict[str, object]:
    data: dict[str, object] = {
        "tenant_id": "t1",
        "ticket_id": "T1",
        "subject": None,
        "body": "My card was stolen",
        "channel": "email",
        "customer_id": None,
        "sensitivity": "internal",
        "created_at": NOW,
        "metadata": {},
    }
    data.update(over)
    return data


def test_every_topic_has_a_schema_that_parses() -> None:
    for topic in EVENT_TYPES:
        assert codec.load_schema(topic)["type"] == "record"


def test_ticket_round_trip_through_envelope() -> None:
    value, headers, event_id = env.encode_event(TICKET_CREATED, ticket())
    decoded = env.decode_event(TICKET_CREATED, value, env.header_map(headers), max_bytes=1 << 20)
    assert decoded.id == event_id
    assert decoded.tenant_id == "t1"
    assert decoded.data["body"] == "My card was stolen"
    assert decoded.data["created_at"] == NOW
    names = dict(headers)
    assert names["ce_type"] == EVENT_TYPES[TICKET_CREATED].encode()
    assert names["ce_specversion"] == b"1.0"
    assert names["content-type"] == b"application/avro"


def test_event_time_is_ce_time_else_the_given_fallback() -> None:
    """ce_time is optional; without it the worker's fallback (the record's Kafka timestamp, the same
    on every redelivery) is the event's time, so its traces keep one ClickHouse partition."""
    value, headers, _ = env.encode_event(TICKET_CREATED, ticket())
    names = env.header_map(headers)
    stamped = env.decode_event(TICKET_CREATED, value, names, max_bytes=1 << 20, fallback_time=NOW)
    assert stamped.time == datetime.fromisoformat(names["ce_time"].replace("Z", "+00:00"))
    assert stamped.time != NOW
    bare = {k: v for k, v in names.items() if k != "ce_time"}
    assert env.decode_event(TICKET_CREATED, value, bare, max_bytes=1 << 20, fallback_time=NOW).time == NOW


def test_trace_decimal_cost_and_null_cost_round_trip() -> None:
    record = {
        "trace_id": "x",
        "event_id": "e",
        "tenant_id": "t",
        "workflow": "ticket",
        "workflow_version": "v",
        "step": "classify",
        "task": "classify_intent",
        "attempt": 1,
        "gen_ai_operation_name": "classify",
        "gen_ai_provider_name": "local",
        "gen_ai_request_model": "m",
        "gen_ai_response_model": "m",
        "gen_ai_usage_input_tokens": 12,
        "gen_ai_usage_output_tokens": 1,
        "prompt_version": "p",
        "latency_ms": 1.5,
        "cost_usd": Decimal("0.000001234"),
        "price_version": "2026-11-01",
        "cache_status": "miss",
        "status": "ok",
        "error_class": None,
        "started_at": NOW,
        "event_time": NOW,
    }
    assert codec.decode(AI_TRACES, codec.encode(AI_TRACES, record))["cost_usd"] == Decimal("0.000001234")
    record["cost_usd"] = None
    assert codec.decode(AI_TRACES, codec.encode(AI_TRACES, record))["cost_usd"] is None


def test_record_missing_a_required_field_is_refused_at_the_producer() -> None:
    data = ticket()
    del data["body"]
    with pytest.raises(codec.CodecError):
        codec.encode(TICKET_CREATED, data)


def test_wrong_schema_bytes_are_refused() -> None:
    value, headers, _ = env.encode_event(TICKET_CREATED, ticket())
    with pytest.raises((codec.CodecError, env.EnvelopeError)):
        env.decode_event(DOCUMENT_UPLOADED, value, env.header_map(headers), max_bytes=1 << 20)


def test_empty_tenant_is_refused() -> None:
    value, headers, _ = env.encode_event(TICKET_CREATED, ticket(tenant_id=" "))
    with pytest.raises(env.EnvelopeError, match="tenant"):
        env.decode_event(TICKET_CREATED, value, env.header_map(headers), max_bytes=1 << 20)


def test_oversize_value_is_refused_before_decoding() -> None:
    value, headers, _ = env.encode_event(TICKET_CREATED, ticket(body="x" * 5000))
    with pytest.raises(env.EnvelopeError, match="limit"):
        env.decode_event(TICKET_CREATED, value, env.header_map(headers), max_bytes=1000)


def test_truncated_value_is_refused() -> None:
    value, headers, _ = env.encode_event(TICKET_CREATED, ticket())
    with pytest.raises(codec.CodecError):
        env.decode_event(TICKET_CREATED, value[:-7], env.header_map(headers), max_bytes=1 << 20)


def test_result_ids_are_deterministic_per_cause_and_version() -> None:
    assert env.result_event_id("a", "v1") == env.result_event_id("a", "v1")
    assert env.result_event_id("a", "v1") != env.result_event_id("a", "v2")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512), st.sampled_from([TICKET_CREATED, DOCUMENT_UPLOADED]))
def test_arbitrary_bytes_never_escape_as_unexpected_exceptions(data: bytes, topic: str) -> None:
    headers = {"ce_id": "1", "ce_type": EVENT_TYPES[topic], "ce_source": "s", "ce_specversion": "1.0"}
    with contextlib.suppress(codec.CodecError, env.EnvelopeError):
        env.decode_event(topic, data, headers, max_bytes=1 << 20)


def _without(headers: list[tuple[str, bytes]], name: str) -> list[tuple[str, bytes]]:
    return [(k, v) for k, v in headers if k != name]


def _with(headers: list[tuple[str, bytes]], name: str, value: bytes | None) -> list[tuple[str, Any]]:
    return [*_without(headers, name), (name, value)]


GOOD_TRACE_HEADERS = env.build_headers(
    event_id="t-1", topic=AI_TRACES, tenant_id="acme", source="urn:riverbed:gateway", causation_id="e-1"
)
HEADER_CASES = {
    "as published": GOOD_TRACE_HEADERS,
    "no ce_id": _without(GOOD_TRACE_HEADERS, "ce_id"),
    "empty ce_source": _with(GOOD_TRACE_HEADERS, "ce_source", b""),
    "null ce_specversion": _with(GOOD_TRACE_HEADERS, "ce_specversion", None),
    "another topic's type": _with(GOOD_TRACE_HEADERS, "ce_type", EVENT_TYPES[TICKET_CREATED].encode()),
    "type not UTF-8": _with(GOOD_TRACE_HEADERS, "ce_type", b"io.riverbed.\xff"),
    "type given twice, the last one wrong": [*GOOD_TRACE_HEADERS, ("ce_type", b"io.other")],
}


@pytest.mark.parametrize("case", HEADER_CASES)
def test_the_envelope_check_gives_the_same_verdict_on_header_bytes_as_on_decoded_headers(case: str) -> None:
    """The sink checks traces on the records' header bytes, the worker on decoded headers."""
    headers = HEADER_CASES[case]

    def verdict(mapping: Any) -> str:
        try:
            env.check_envelope(AI_TRACES, b"value", mapping, max_bytes=1 << 20)
        except env.EnvelopeError as exc:
            return str(exc)
        return "ok"

    decoded, raw = verdict(env.header_map(headers)), verdict(dict(headers))
    assert decoded == raw
    assert (decoded == "ok") == (case == "as published")
