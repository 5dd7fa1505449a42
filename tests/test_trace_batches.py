"""Trace batch messages: how the worker packs traces and how the sink reads the count back.

No broker here: the messages are built and read as values and headers; tests/test_sink_avro.py
sends them through the real broker into chdb.
"""

from __future__ import annotations

from typing import Any

import pytest

from streams import codec
from streams import envelope as env
from streams import trace_batches as tb
from streams.topics import AI_TRACES, TICKET_CREATED
from tests.test_sink_avro import varied_trace


def traces(count: int, run_id: str = "tb") -> list[dict[str, Any]]:
    return [varied_trace(i, run_id) for i in range(count)]


def test_one_message_per_tenant_holding_its_traces_in_order() -> None:
    batch = traces(9)  # tenants alternate acme, globex
    messages = tb.trace_messages(batch)
    assert [m.topic for m in messages] == [AI_TRACES, AI_TRACES]
    for message in messages:
        headers = env.header_map(message.headers)
        count = tb.records_in(headers)
        records = codec.decode_many(AI_TRACES, message.value, count)
        expected = [t for t in batch if t["tenant_id"] == headers["ce_tenantid"]]
        assert [r["trace_id"] for r in records] == [t["trace_id"] for t in expected]
        assert codec.encode_many(AI_TRACES, records) == message.value
        assert message.key == expected[0]["event_id"].encode()
    assert sorted(tb.records_in(env.header_map(m.headers)) for m in messages) == [4, 5]


def test_a_tenants_traces_are_split_at_the_byte_and_count_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    one = len(codec.encode(AI_TRACES, varied_trace(0, "tb")))
    monkeypatch.setattr(tb, "MAX_TRACE_BATCH_BYTES", 3 * one + one // 2)
    acme = [t for t in traces(40) if t["tenant_id"] == "acme"]  # 20 traces
    by_bytes = [tb.records_in(env.header_map(m.headers)) for m in tb.trace_messages(acme)]
    assert sum(by_bytes) == 20 and max(by_bytes) <= 3 and len(by_bytes) >= 7
    monkeypatch.setattr(tb, "MAX_TRACE_BATCH_BYTES", 1 << 30)
    monkeypatch.setattr(tb, "MAX_TRACES_PER_MESSAGE", 8)
    by_count = [tb.records_in(env.header_map(m.headers)) for m in tb.trace_messages(acme)]
    assert by_count == [8, 8, 4]


def test_a_trace_larger_than_the_byte_limit_still_travels_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tb, "MAX_TRACE_BATCH_BYTES", 10)
    messages = tb.trace_messages(traces(2)[:1])
    assert [tb.records_in(env.header_map(m.headers)) for m in messages] == [1]


def test_message_ids_come_from_the_traces_so_a_republish_repeats_them() -> None:
    first = [m.event_id for m in tb.trace_messages(traces(10, "same"))]
    again = [m.event_id for m in tb.trace_messages(traces(10, "same"))]
    other = [m.event_id for m in tb.trace_messages(traces(10, "other"))]
    assert first == again and len(set(first)) == 2
    assert not set(first) & set(other)


def test_batch_headers_pass_the_sinks_check_as_bytes_and_decoded() -> None:
    message = tb.trace_messages(traces(6))[0]
    raw = dict(message.headers)
    assert raw["ce_type"] == tb.TRACE_BATCH_TYPE.encode()
    assert tb.check_trace_message(message.value, raw, 1 << 20) == (message.value, 3)
    assert tb.check_trace_message(message.value, env.header_map(message.headers), 1 << 20) == (
        message.value,
        3,
    )


def test_a_single_trace_message_counts_one() -> None:
    value, headers, _ = env.encode_event(AI_TRACES, varied_trace(0, "tb"))
    assert tb.check_trace_message(value, dict(headers), 1 << 20) == (value, 1)


@pytest.mark.parametrize("count", [None, b"", b"0", b"-3", b"three"])
def test_a_batch_without_a_positive_count_is_refused(count: bytes | None) -> None:
    message = tb.trace_messages(traces(2))[0]
    headers = {k: v for k, v in message.headers if k != tb.RECORDS_HEADER}
    if count is not None:
        headers[tb.RECORDS_HEADER] = count
    with pytest.raises(tb.TraceBatchError):
        tb.check_trace_message(message.value, headers, 1 << 20)


def test_the_batch_type_is_refused_on_other_topics() -> None:
    message = tb.trace_messages(traces(2))[0]
    with pytest.raises(env.EnvelopeError, match="does not belong"):
        env.check_envelope(TICKET_CREATED, message.value, dict(message.headers), 1 << 20)


def test_decode_many_reads_exactly_the_count() -> None:
    records = traces(3)
    value = codec.encode_many(AI_TRACES, records)
    assert [r["trace_id"] for r in codec.decode_many(AI_TRACES, value, 3)] == [r["trace_id"] for r in records]
    with pytest.raises(codec.CodecError, match="trailing"):
        codec.decode_many(AI_TRACES, value, 2)
    with pytest.raises(codec.CodecError, match="record 4 of 4"):
        codec.decode_many(AI_TRACES, value, 4)
    with pytest.raises(codec.CodecError):
        codec.decode_many(AI_TRACES, value[:-7], 3)
