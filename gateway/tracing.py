"""Trace records: one per model-call attempt, shaped like the ai.traces.v1 Avro schema.

The id is derived from (event, step, workflow version, delivery attempt, call attempt) so a
redelivered event re-emits the same trace ids and ClickHouse's ReplacingMergeTree keeps one row each.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from gateway.models import CallContext

OPERATION_NAMES: dict[str, str] = {
    "embed": "embeddings",
    "classify_intent": "classify",
    "classify_topic": "classify",
    "extract": "extract",
    "summarize": "summarize",
}
"""gen_ai.operation.name of the local tasks; any other task is a chat call."""
COST_QUANTUM = Decimal("0.000000001")


def trace_id(ctx: CallContext, attempt: int, call_attempt: int = 1) -> str:
    key = f"riverbed:trace:{ctx.event_id}:{ctx.step}:{ctx.workflow_version}:{attempt}:{call_attempt}"
    return uuid5_str(key)


_URL_NAMESPACE = uuid.NAMESPACE_URL.bytes


def uuid5_str(name: str) -> str:
    """``str(uuid.uuid5(NAMESPACE_URL, name))`` without building UUID objects: every call, cache hit
    included, makes one, and the stdlib path costs as much as the rest of a cache hit."""
    digest = bytearray(hashlib.sha1(_URL_NAMESPACE + name.encode("utf-8", "surrogatepass")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(slots=True)
class AttemptFacts:
    """What the gateway knows about one attempt once it is over."""

    route: str
    provider: str
    request_model: str
    response_model: str
    call_attempt: int
    breaker_state: str
    prompt_version: str
    latency_ms: float
    started_at: datetime
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: Decimal | None = None
    cache_status: str = "miss"
    error: BaseException | None = None
    input_preview: str = ""
    output_preview: str = ""
    redactions: int = 0
    """PII items masked in the two previews (gateway/redact.py)."""
    fell_back: bool = False
    """The first call on a route other than the invocation's first: set once per invocation that
    falls back, so ClickHouse counts fallbacks without grouping calls by event."""


def trace_record(ctx: CallContext, task: str, facts: AttemptFacts, price_version: str) -> dict[str, Any]:
    error = facts.error
    return {
        "trace_id": trace_id(ctx, ctx.attempt, facts.call_attempt),
        "event_id": ctx.event_id,
        "tenant_id": ctx.tenant_id,
        "workflow": ctx.workflow,
        "workflow_version": ctx.workflow_version,
        "step": ctx.step,
        "task": task,
        "attempt": ctx.attempt,
        "call_attempt": facts.call_attempt,
        "fell_back": facts.fell_back,
        "route": facts.route,
        "breaker_state": facts.breaker_state,
        "gen_ai_operation_name": OPERATION_NAMES.get(task, "chat"),
        "gen_ai_provider_name": facts.provider,
        "gen_ai_request_model": facts.request_model,
        "gen_ai_response_model": facts.response_model,
        "gen_ai_usage_input_tokens": facts.input_tokens,
        "gen_ai_usage_output_tokens": facts.output_tokens,
        "gen_ai_usage_cache_read_input_tokens": facts.cache_read_tokens,
        "gen_ai_usage_cache_creation_input_tokens": facts.cache_write_tokens,
        "prompt_version": facts.prompt_version,
        "latency_ms": round(facts.latency_ms, 3),
        "cost_usd": facts.cost_usd.quantize(COST_QUANTUM) if facts.cost_usd is not None else None,
        "price_version": price_version,
        "cache_status": facts.cache_status,
        "status": "error" if error else "ok",
        "error_class": type(error).__name__ if error else None,
        "error_message": str(error)[:500] if error else None,
        "input_preview": facts.input_preview,
        "output_preview": facts.output_preview,
        "redaction_count": facts.redactions,
        "started_at": facts.started_at,
        "event_time": ctx.event_time,
    }
