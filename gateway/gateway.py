"""The gateway's whole policy for now: task → the one provider that serves it, a deadline per call,
one trace per attempt, and failures isolated to the request that caused them.

Workflows hand it a batch of requests for one task (one per event) because the local models are
several times faster per item in batches; if the batch fails, each request is retried alone so one
poisonous input cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from gateway.models import GatewayError, ModelRequest, ModelResponse, ProviderResult, Task
from gateway.pricing import PriceTable, load_prices
from gateway.tracing import trace_id, trace_record

log = structlog.get_logger(__name__)
TraceRecord = dict[str, Any]


class Provider(Protocol):
    name: str

    def model_for(self, task: Task) -> str: ...

    def prompt_version(self, task: Task) -> str: ...

    async def run(self, task: Task, requests: Sequence[ModelRequest]) -> list[ProviderResult]: ...


class Gateway:
    def __init__(self, provider: Provider, *, deadline_s: float = 60.0, prices: PriceTable | None = None):
        self._provider = provider
        self._deadline_s = deadline_s
        self._prices = prices or load_prices()

    @property
    def provider(self) -> Provider:
        return self._provider

    def model_key(self, task: Task) -> str:
        return f"{self._provider.name}/{self._provider.model_for(task)}"

    async def run(
        self, requests: Sequence[ModelRequest], traces: list[TraceRecord]
    ) -> list[ModelResponse | GatewayError]:
        """Answer every request (all of one task); append one trace per attempt to ``traces``."""
        if not requests:
            return []
        task = requests[0].task
        if any(r.task is not task for r in requests):
            raise ValueError("a gateway batch must hold one task")
        started = datetime.now(UTC)
        t0 = time.perf_counter()
        try:
            results = await asyncio.wait_for(self._provider.run(task, requests), self._deadline_s)
        except Exception as exc:  # the batch failed: isolate the culprit(s) one by one
            log.warning("gateway_batch_failed", task=task.value, size=len(requests), error=repr(exc))
            if len(requests) == 1:
                return [self._failure(requests[0], exc, started, time.perf_counter() - t0, traces)]
            singles = [await self.run([r], traces) for r in requests]
            return [s[0] for s in singles]
        # Each request waited for the whole batch call: that wall time is the latency it experienced.
        elapsed_s = time.perf_counter() - t0
        return [
            self._success(r, res, started, elapsed_s, traces)
            for r, res in zip(requests, results, strict=True)
        ]

    def _success(
        self,
        req: ModelRequest,
        res: ProviderResult,
        started: datetime,
        elapsed_s: float,
        traces: list[TraceRecord],
    ) -> ModelResponse:
        model = self._provider.model_for(req.task)
        cost = self._prices.cost(self.model_key(req.task), res.input_tokens, res.output_tokens)
        cache_status = "hit" if res.cached else "miss"
        traces.append(
            trace_record(
                ctx=req.context,
                task=req.task,
                attempt=req.context.attempt,
                provider=self._provider.name,
                model=model,
                input_tokens=res.input_tokens,
                output_tokens=res.output_tokens,
                prompt_version=self._provider.prompt_version(req.task),
                latency_ms=elapsed_s * 1000,
                cost_usd=cost,
                price_version=self._prices.version,
                cache_status=cache_status,
                error=None,
                started_at=started,
            )
        )
        return ModelResponse(
            task=req.task,
            output=res.output,
            provider=self._provider.name,
            model=model,
            input_tokens=res.input_tokens,
            output_tokens=res.output_tokens,
            latency_ms=elapsed_s * 1000,
            cost_usd=cost,
            cache_status=cache_status,
            attempts=1,
            trace_id=trace_id(req.context, req.context.attempt),
        )

    def _failure(
        self,
        req: ModelRequest,
        exc: BaseException,
        started: datetime,
        elapsed_s: float,
        traces: list[TraceRecord],
    ) -> GatewayError:
        traces.append(
            trace_record(
                ctx=req.context,
                task=req.task,
                attempt=req.context.attempt,
                provider=self._provider.name,
                model=self._provider.model_for(req.task),
                input_tokens=0,
                output_tokens=0,
                prompt_version=self._provider.prompt_version(req.task),
                latency_ms=elapsed_s * 1000,
                cost_usd=None,
                price_version=self._prices.version,
                cache_status="miss",
                error=exc,
                started_at=started,
            )
        )
        retryable = isinstance(exc, TimeoutError | ConnectionError)
        return GatewayError(
            f"{req.task.value} failed: {type(exc).__name__}: {exc}", task=req.task, retryable=retryable
        )
