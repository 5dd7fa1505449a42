"""Traces travel in batches: one Kafka message holds the traces of one tenant from one worker batch.

Why: a trace is small (~360 bytes of Avro) and there is one per model call, so one message per
trace made the sink pay Kafka's per-record costs (aiokafka's record parsing, eight CloudEvents
headers, the envelope checks: ~9 µs a trace, 2026-11-24) for every row, about as much as
ClickHouse's own insert. A batch pays them once for up to ``MAX_TRACES_PER_MESSAGE`` traces. The
OpenTelemetry collector's Kafka exporter ships spans the same way, a batch per message.

A batch message is a CloudEvent of type ``TRACE_BATCH_TYPE`` on ``ai.traces.v1`` whose value is
its ai.traces.v1 records back to back (the body of an Avro container block; ``codec.decode_many``
reads it) and whose ``RECORDS_HEADER`` says how many there are. A message of the topic's own type
still holds exactly one trace, so traces published before batches existed are still read.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from agents.outcome import OutboundEvent
from streams import codec
from streams import envelope as env
from streams.topics import AI_TRACES

TRACE_BATCH_TYPE = "io.riverbed.ai.trace.batch.v1"
RECORDS_HEADER = "x-riverbed-records"
MAX_TRACES_PER_MESSAGE = 1000
MAX_TRACE_BATCH_BYTES = 256 * 1024
"""A message's value stays under one producer batch (streams/app.py) and far under the broker's
message limit; at ~360 bytes a trace, that is ~700 traces."""
SOURCE = "urn:riverbed:gateway"


class TraceBatchError(ValueError):
    """A batch message whose record count header is missing or not a positive integer."""


def trace_messages(traces: Sequence[dict[str, Any]]) -> list[OutboundEvent]:
    """The messages that carry ``traces``: one per tenant (``ce_tenantid`` is one tenant), split
    where a value would pass ``MAX_TRACE_BATCH_BYTES`` or ``MAX_TRACES_PER_MESSAGE``. The message id
    is derived from its traces' ids, so republishing the same traces gives the same ids."""
    by_tenant: dict[str, list[dict[str, Any]]] = {}
    for trace in traces:
        by_tenant.setdefault(str(trace["tenant_id"]), []).append(trace)
    messages = []
    for tenant, tenant_traces in by_tenant.items():
        values = [codec.encode(AI_TRACES, trace) for trace in tenant_traces]
        for start, stop in _chunks(values):
            head = tenant_traces[start]
            name = f"riverbed:traces:{head['trace_id']}:{stop - start}"
            batch_id = str(uuid.uuid5(uuid.NAMESPACE_URL, name))
            headers = env.build_headers(
                event_id=batch_id,
                topic=AI_TRACES,
                tenant_id=tenant,
                source=SOURCE,
                event_type=TRACE_BATCH_TYPE,
                extra=[(RECORDS_HEADER, str(stop - start).encode())],
            )
            value = b"".join(values[start:stop])
            messages.append(OutboundEvent(AI_TRACES, head["event_id"].encode(), value, headers, batch_id))
    return messages


def _chunks(values: Sequence[bytes]) -> Iterator[tuple[int, int]]:
    """(start, stop) ranges of ``values`` within both limits; a value alone is never split."""
    start, size = 0, 0
    for i, value in enumerate(values):
        if i > start and (size + len(value) > MAX_TRACE_BATCH_BYTES or i - start >= MAX_TRACES_PER_MESSAGE):
            yield start, i
            start, size = i, 0
        size += len(value)
    if values:
        yield start, len(values)


def records_in(headers: Mapping[str, str] | Mapping[str, bytes | None]) -> int:
    """How many traces a checked ai.traces.v1 message holds: its ``RECORDS_HEADER`` for a batch, 1
    for a single trace. Reads decoded headers or the record's own header bytes, as
    ``env.check_envelope`` does."""
    ce_type = headers.get("ce_type")
    if ce_type not in (TRACE_BATCH_TYPE, TRACE_BATCH_TYPE.encode()):
        return 1
    raw = headers.get(RECORDS_HEADER)
    try:
        count = int(raw or b"")
    except ValueError:
        count = 0
    if count < 1:
        raise TraceBatchError(f"trace batch without a positive {RECORDS_HEADER} header: {raw!r}")
    return count


def check_trace_message(
    value: bytes | None, headers: Mapping[str, str] | Mapping[str, bytes | None], max_bytes: int
) -> tuple[bytes, int]:
    """The envelope checks of an ai.traces.v1 message, single trace or batch: (value, traces in it)."""
    checked = env.check_envelope(AI_TRACES, value, headers, max_bytes, types=(TRACE_BATCH_TYPE,))
    return checked, records_in(headers)
