"""Trace records: one per model-call attempt, shaped like the ai.traces.v1 Avro schema.

The id is derived from (event, step, workflow version, attempt) so a redelivered event re-emits the
same trace id and ClickHouse's ReplacingMergeTree keeps one row for it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from gateway.models import CallContext, Task

OPERATION_NAMES: dict[Task, str] = {
    Task.EMBED: "embeddings",
    Task.CLASSIFY_INTENT: "classify",
    Task.CLASSIFY_TOPIC: "classify",
    Task.EXTRACT: "extract",
    Task.SUMMARIZE: "summarize",
}


def trace_id(ctx: CallContext, attempt: int) -> str:
    key = f"riverbed:trace:{ctx.event_id}:{ctx.step}:{ctx.workflow_version}:{attempt}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, key))


def trace_record(
    *,
    ctx: CallContext,
    task: Task,
    attempt: int,
    provider: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    prompt_version: str,
    latency_ms: float,
    cost_usd: Decimal | None,
    price_version: str,
    cache_status: str,
    error: BaseException | None,
    started_at: datetime,
) -> dict[str, Any]:
    return {
        "trace_id": trace_id(ctx, attempt),
        "event_id": ctx.event_id,
        "tenant_id": ctx.tenant_id,
        "workflow": ctx.workflow,
        "workflow_version": ctx.workflow_version,
        "step": ctx.step,
        "task": task.value,
        "attempt": attempt,
        "gen_ai_operation_name": OPERATION_NAMES[task],
        "gen_ai_provider_name": provider,
        "gen_ai_request_model": model,
        "gen_ai_response_model": model,
        "gen_ai_usage_input_tokens": input_tokens,
        "gen_ai_usage_output_tokens": output_tokens,
        "prompt_version": prompt_version,
        "latency_ms": round(latency_ms, 3),
        "cost_usd": cost_usd.quantize(Decimal("0.000000001")) if cost_usd is not None else None,
        "price_version": price_version,
        "cache_status": cache_status,
        "status": "error" if error else "ok",
        "error_class": type(error).__name__ if error else None,
        "started_at": started_at,
    }
