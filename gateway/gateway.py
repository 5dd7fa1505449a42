"""The one way any model is called: policy → cache → budget → rate limit → provider, with fallback.

For one request the gateway walks the task's routes in policy order (restricted data: local routes
only; an A/B split picks its arm by event id, so a replay takes the same arm). On each route it
retries what may pass on a second try (timeouts, 429 honouring Retry-After, 5xx) with exponential
backoff and full jitter inside the call's deadline, then falls back to the next route; a 400-class
content error stops at once. Every attempt leaves a trace. Workflows hand it batches of one task:
batches go to the local tier in one call (several times faster per item) and fall back per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import jsonschema
import structlog

from gateway.breaker import BreakerState, CircuitBreaker
from gateway.budget import BudgetLedger, Reservation
from gateway.cache import Coalescer, ExactCache, request_key
from gateway.contracts import CONTRACTS, embedding_matrix
from gateway.errors import (
    AllRoutesFailed,
    AttemptError,
    BreakerOpen,
    BudgetExceeded,
    ContentRejected,
    ContextOverflow,
    DeadlineExceeded,
    Disposition,
    FailedAttempt,
    GatewayError,
    MalformedResponse,
    NoEligibleRoute,
    OverCostCap,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from gateway.limits import ProviderLimits, estimate_tokens
from gateway.models import CallContext, ModelRequest, ModelResponse, ProviderResult
from gateway.policy import Policy, PolicyStore, ProviderConfig, Route, TaskPolicy
from gateway.pricing import PriceTable, load_prices
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.base import HttpProvider, Message, Reply, Secrets, Usage
from gateway.providers.openai import OpenAIProvider
from gateway.redact import Redactor
from gateway.semantic_cache import SemanticCache
from gateway.tracing import AttemptFacts, trace_record

log = structlog.get_logger(__name__)
TraceRecord = dict[str, Any]
MAX_BATCH_INPUTS = 256
"""Inputs per batched embeddings request at most: a batch of long documents (a request per
document, one input per chunk) is split across calls, well below providers' per-request caps
(OpenAI: 2,048 inputs)."""
BREAKER_NEUTRAL = (ContentRejected, ContextOverflow, BreakerOpen, OverCostCap, DeadlineExceeded)
"""Errors about the request or our own limits, not the provider's health: not counted by breakers."""


class LocalTier(Protocol):
    """The in-process provider (gateway/local): answers batches of one task."""

    name: str

    def model_for(self, task: Any) -> str: ...

    def prompt_version(self, task: Any) -> str: ...

    async def run(self, task: Any, requests: Sequence[ModelRequest]) -> list[ProviderResult]: ...


@dataclass
class _Call:
    """One request's walk over its routes."""

    req: ModelRequest
    policy: Policy
    task_policy: TaskPolicy
    deadline: float
    traces: list[TraceRecord]
    failed: list[FailedAttempt] = field(default_factory=list)
    seq: int = 0
    first_route: str | None = None
    fell_back: bool = False

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


def ad_hoc_context(tenant: str, task: str, sensitivity: str = "internal") -> CallContext:
    """Context of a call made outside a workflow (a script, the benchmark): its own event id."""
    event_id = f"adhoc-{random.getrandbits(64):016x}"
    return CallContext(event_id, tenant, "adhoc", "adhoc", task, datetime.now(UTC), sensitivity)


class Gateway:
    def __init__(
        self,
        local: LocalTier | None = None,
        *,
        policy: PolicyStore | None = None,
        policy_file: Path | None = None,
        prices: PriceTable | None = None,
        secrets: Secrets | None = None,
        semantic_cache: SemanticCache | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.local = local
        self._redactor = redactor or Redactor()
        self._semantic = semantic_cache
        self._policy = policy or (PolicyStore(policy_file) if policy_file else PolicyStore())
        self._prices = prices or load_prices()
        self._secrets = secrets or Secrets()
        self._providers: dict[tuple[str, ProviderConfig], HttpProvider] = {}
        self._limits: dict[tuple[str, ProviderConfig], ProviderLimits] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self.budget = BudgetLedger(self._policy.policy.budgets)
        self._cache: ExactCache[ModelResponse] = ExactCache()
        self._coalescer: Coalescer[ModelResponse] = Coalescer()

    # -- public API -----------------------------------------------------------------------------

    @property
    def policy(self) -> Policy:
        return self._policy.policy

    def prompt_version(self, task: str) -> str:
        """Version of what answers ``task`` first: the local artifact, or the task's prompt version."""
        policy = self.policy
        task_policy = policy.task(task)
        return self._prompt_version_of(task, policy.providers[task_policy.routes[0].provider], task_policy)

    def _prompt_version_of(self, task: str, provider_config: ProviderConfig, task_policy: TaskPolicy) -> str:
        if provider_config.kind == "local" and self.local is not None:
            return self.local.prompt_version(task)
        return task_policy.prompt_version

    def breaker_state(self, route: str) -> BreakerState:
        breaker = self._breakers.get(route)
        return breaker.state if breaker else BreakerState.CLOSED

    async def complete(
        self,
        task: str,
        messages: str | Sequence[Message],
        *,
        tenant: str,
        context: CallContext | None = None,
        json_schema: dict[str, Any] | None = None,
        sensitivity: str = "internal",
        traces: list[TraceRecord] | None = None,
    ) -> ModelResponse:
        """Answer one chat-style request; raises a GatewayError subclass when no route can."""
        ctx = context or ad_hoc_context(tenant, task, sensitivity)
        if isinstance(messages, str):
            req = ModelRequest(task, ctx, text=messages, json_schema=json_schema)
        else:
            req = ModelRequest(task, ctx, messages=tuple(messages), json_schema=json_schema)
        return await self._serve(req, [] if traces is None else traces)

    async def embed(
        self,
        texts: Sequence[str],
        *,
        tenant: str,
        task: str = "embed",
        context: CallContext | None = None,
        traces: list[TraceRecord] | None = None,
    ) -> ModelResponse:
        ctx = context or ad_hoc_context(tenant, task)
        req = ModelRequest(task, ctx, parts=tuple(texts))
        return await self._serve(req, [] if traces is None else traces)

    async def run(
        self, requests: Sequence[ModelRequest], traces: list[TraceRecord]
    ) -> list[ModelResponse | GatewayError]:
        """Answer a batch of one task (one request per event); failures come back in place, typed."""
        if not requests:
            return []
        task = requests[0].task
        if any(r.task != task for r in requests):
            raise ValueError("a gateway batch must hold one task")
        policy = self.policy
        first = policy.task(task).routes[0]
        if policy.providers[first.provider].kind == "local" and len(requests) > 1:
            return await self._run_local_batch(requests, first, policy, traces)
        if task == "embed" and len(requests) > 1 and _batchable_remote(policy, policy.task(task)):
            return await self._run_remote_embed_batch(requests, first, policy, traces)
        served = await asyncio.gather(*(self._serve_or_error(r, traces) for r in requests))
        return list(served)

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()
        if self._semantic is not None:
            self._semantic.close()
            self._semantic = None

    # -- one request ------------------------------------------------------------------------------

    async def _serve_or_error(
        self, req: ModelRequest, traces: list[TraceRecord], after: _Call | None = None
    ) -> ModelResponse | GatewayError:
        try:
            return await self._serve(req, traces, after)
        except GatewayError as exc:
            return exc

    async def _serve(
        self, req: ModelRequest, traces: list[TraceRecord], after: _Call | None = None
    ) -> ModelResponse:
        """``after``: the walk so far of a request whose batch call failed; its attempts go on from
        there (numbered after the batch attempt, within the same deadline)."""
        policy = self.policy
        task_policy = policy.task(req.task)
        key = self._cache_key(req)
        cached = self._cached(key, req, task_policy, traces)
        if cached is not None:
            return cached
        started, t0 = datetime.now(UTC), time.perf_counter()
        semantic = self._semantic if task_policy.semantic_threshold is not None else None
        vector: Sequence[float] = ()
        if semantic is not None:
            hit, vector = await semantic.lookup(
                req.context.tenant_id,
                req.task,
                self._policy.fingerprint,
                _prompt_text(req),
                task_policy.semantic_threshold or 1.0,
            )
            if hit is not None:
                found = ModelResponse(
                    req.task,
                    hit.output,
                    hit.provider,
                    hit.model,
                    hit.route,
                    0,
                    0,
                    0.0,
                    Decimal(0),
                    "semantic_hit",
                    0,
                    "",
                )
                return self._reuse(req, found, "semantic_hit", started, t0, traces)
        call = after or _Call(req, policy, task_policy, time.monotonic() + task_policy.deadline_s, traces)
        response, shared = await self._coalescer.run(key, lambda: self._walk(call, self._routes(call)))
        if shared:
            return self._reuse(req, response, "coalesced", started, t0, traces)
        if task_policy.cache_ttl_s is not None:
            self._cache.put(key, response, task_policy.cache_ttl_s)
        if semantic is not None:
            semantic.store(
                req.context.tenant_id,
                req.task,
                self._policy.fingerprint,
                _prompt_text(req),
                vector,
                output=response.output,
                provider=response.provider,
                model=response.model,
                route=response.route,
            )
        return response

    def _reuse(
        self,
        req: ModelRequest,
        response: ModelResponse,
        status: str,
        started: datetime,
        t0: float,
        traces: list[TraceRecord],
    ) -> ModelResponse:
        """An answer served without a provider call: traced (at zero cost) so the event's lineage and
        the cache hit rate are visible."""
        facts = AttemptFacts(
            route=response.route,
            provider=response.provider,
            request_model=response.model,
            response_model=response.model,
            call_attempt=1,
            breaker_state=BreakerState.CLOSED.value,
            prompt_version=self.prompt_version(req.task),
            latency_ms=(time.perf_counter() - t0) * 1000,
            started_at=started,
            cost_usd=Decimal(0),
            cache_status=status,
            **self._previews(req, response.output),
        )
        traces.append(trace_record(req.context, req.task, facts, self._prices.version))
        return ModelResponse(
            task=response.task,
            output=response.output,
            provider=response.provider,
            model=response.model,
            route=response.route,
            input_tokens=0,
            output_tokens=0,
            latency_ms=facts.latency_ms,
            cost_usd=Decimal(0),
            cache_status=status,
            attempts=0,
            trace_id=traces[-1]["trace_id"],
        )

    def _routes(self, call: _Call) -> list[Route]:
        routes = call.task_policy.routes
        if call.req.context.sensitivity == "restricted":
            routes = [r for r in routes if call.policy.providers[r.provider].local]
            if not routes:
                raise NoEligibleRoute(call.req.task, "restricted data and no route is marked local")
        arms = [r for r in routes if r.weight is not None]
        if len(arms) < 2:
            return routes
        picked = _pick_arm(arms, call.req.context.event_id)
        return [picked] + [r for r in routes if r is not picked]

    async def _walk(self, call: _Call, routes: Sequence[Route]) -> ModelResponse:
        budget_refusal: BudgetExceeded | None = None
        smallest_overflowed: int | None = None
        for route in routes:
            if smallest_overflowed is not None and (route.context_window or 0) <= smallest_overflowed:
                continue  # cannot hold a prompt that overflowed a window at least this large
            try:
                return await self._on_route(call, route)
            except BudgetExceeded as exc:
                budget_refusal = exc  # a cheaper route further down may still fit
            except AttemptError as exc:
                if exc.disposition is Disposition.FAIL:
                    break
                if isinstance(exc, ContextOverflow):
                    smallest_overflowed = route.context_window or 0
        if budget_refusal is not None and not call.failed:
            raise budget_refusal
        raise AllRoutesFailed(call.req.task, call.failed, retryable=_retryable(call.failed))

    async def _on_route(self, call: _Call, route: Route) -> ModelResponse:
        provider_config = call.policy.providers[route.provider]
        reservation = self._reserve(call, route, provider_config)
        try:
            return await self._attempts(call, route, provider_config, reservation)
        finally:
            if reservation is not None:
                self.budget.settle(reservation, Decimal(0))  # no-op when the success path settled it

    def _reserve(self, call: _Call, route: Route, provider_config: ProviderConfig) -> Reservation | None:
        if provider_config.kind == "local":
            return None
        worst = self._prices.worst_case(self._price_key(route), call.req.prompt_bytes, route.max_tokens)
        if worst is None:
            worst = Decimal(0)  # unknown price: the call is allowed, its cost is reported as unknown
        if route.max_cost_usd is not None and worst > route.max_cost_usd:
            error = OverCostCap(f"worst case ${worst} over the route's cap ${route.max_cost_usd}")
            self._record_failure(call, route, provider_config, error, 0.0, datetime.now(UTC))
            raise error
        return self.budget.reserve(call.req.context.tenant_id, worst, call.req.task)

    async def _attempts(
        self, call: _Call, route: Route, provider_config: ProviderConfig, reservation: Reservation | None
    ) -> ModelResponse:
        breaker = self._breaker(route)
        for retry in range(route.retries + 1):
            remaining = call.remaining()
            if remaining <= 0:
                error: AttemptError = DeadlineExceeded(f"deadline of {call.task_policy.deadline_s}s passed")
                self._record_failure(call, route, provider_config, error, 0.0, datetime.now(UTC))
                raise error
            if not breaker.allow():
                error = BreakerOpen(f"circuit of {route.name} is open")
                self._record_failure(call, route, provider_config, error, 0.0, datetime.now(UTC))
                raise error
            started, t0 = datetime.now(UTC), time.perf_counter()
            try:
                reply = await self._attempt(call, route, provider_config, remaining)
            except AttemptError as exc:
                if not isinstance(exc, BREAKER_NEUTRAL):
                    breaker.record(ok=False)
                self._record_failure(call, route, provider_config, exc, time.perf_counter() - t0, started)
                if exc.disposition is not Disposition.RETRY or retry == route.retries:
                    raise
                pause = self._backoff(call.policy, retry, exc)
                if pause >= call.remaining():
                    raise  # waiting would blow the deadline: fall back now
                await asyncio.sleep(pause)
                continue
            breaker.record(ok=True)
            return self._succeed(call, route, provider_config, reply, reservation, started, t0)
        raise AssertionError("unreachable: the last retry raises")

    async def _attempt(
        self, call: _Call, route: Route, provider_config: ProviderConfig, remaining: float
    ) -> Reply:
        limits = self._limits_for(route.provider, provider_config)
        if limits.limited:
            await limits.acquire(estimate_tokens(call.req.prompt_bytes, route.max_tokens), remaining)
            remaining = call.remaining()
        timeout_s = min(route.timeout_s or provider_config.timeout_s, remaining)
        try:
            async with asyncio.timeout(timeout_s):
                reply = await self._invoke(call, route, provider_config, timeout_s)
        except TimeoutError:
            raise ProviderTimeout(f"no answer within {timeout_s:.3g}s") from None
        return reply

    async def _invoke(
        self, call: _Call, route: Route, provider_config: ProviderConfig, timeout_s: float
    ) -> Reply:
        req = call.req
        if provider_config.kind == "local":
            return await self._invoke_local(req)
        provider = self._provider(route.provider, provider_config)
        if req.task == "embed" or (req.parts and not req.messages):
            reply = await provider.embed(route, req.inputs, timeout_s=timeout_s)
            return replace(reply, output=embedding_matrix(reply.output))
        contract = CONTRACTS.get(req.task) if req.json_schema is None else None
        schema = req.json_schema or (contract.schema if contract else None)
        system = call.task_policy.system or (contract.instruction if contract else "")
        reply = await provider.chat(
            route, _chat_messages(req, system), json_schema=schema, timeout_s=timeout_s
        )
        if schema is not None:
            reply = _structured(reply, schema)
        if contract is not None:
            try:
                reply = replace(reply, output=contract.parse(reply.output, req))
            except (KeyError, TypeError, ValueError) as exc:
                raise MalformedResponse(f"answer does not fit the {req.task} contract: {exc!r}") from exc
        return reply

    async def _invoke_local(self, req: ModelRequest) -> Reply:
        if self.local is None:
            raise AttemptError("the policy routes to the local provider but none is loaded")
        try:
            (result,) = await self.local.run(req.task, [req])
        except AttemptError:
            raise
        except Exception as exc:  # a local model failing on this input
            raise AttemptError(f"{type(exc).__name__}: {exc}") from exc
        return Reply(
            result.output, Usage(result.input_tokens, result.output_tokens), self.local.model_for(req.task)
        )

    def _succeed(
        self,
        call: _Call,
        route: Route,
        provider_config: ProviderConfig,
        reply: Reply,
        reservation: Reservation | None,
        started: datetime,
        t0: float,
        *,
        latency_ms: float | None = None,
        cache_status: str = "miss",
    ) -> ModelResponse:
        """``latency_ms`` defaults to the time since ``t0``; a batch passes the batch call's."""
        if latency_ms is None:
            latency_ms = (time.perf_counter() - t0) * 1000
        usage = reply.usage
        cost = self._prices.cost(
            self._price_key(route, reply.model if provider_config.kind == "local" else None),
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
        )
        if reservation is not None:
            self.budget.settle(reservation, cost)
        facts = self._facts(
            call,
            route,
            provider_config,
            latency_ms,
            started,
            reply=reply,
            cost=cost,
            cache_status=cache_status,
        )
        call.traces.append(trace_record(call.req.context, call.req.task, facts, self._prices.version))
        return ModelResponse(
            task=call.req.task,
            output=reply.output,
            provider=route.provider,
            model=facts.request_model,
            route=facts.route,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            latency_ms=latency_ms,
            cost_usd=cost,
            cache_status=cache_status,
            attempts=call.seq,
            trace_id=call.traces[-1]["trace_id"],
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
        )

    def _record_failure(
        self,
        call: _Call,
        route: Route,
        provider_config: ProviderConfig,
        error: AttemptError,
        elapsed_s: float,
        started: datetime,
    ) -> None:
        facts = self._facts(call, route, provider_config, elapsed_s * 1000, started, error=error)
        call.traces.append(trace_record(call.req.context, call.req.task, facts, self._prices.version))
        call.failed.append(FailedAttempt(facts.route, call.seq, type(error).__name__, str(error)[:300]))
        log.info(
            "gateway_attempt_failed",
            task=call.req.task,
            route=facts.route,
            error_class=type(error).__name__,
            event_id=call.req.context.event_id,
        )

    def _facts(
        self,
        call: _Call,
        route: Route,
        provider_config: ProviderConfig,
        latency_ms: float,
        started: datetime,
        *,
        reply: Reply | None = None,
        cost: Decimal | None = None,
        error: AttemptError | None = None,
        cache_status: str = "miss",
    ) -> AttemptFacts:
        call.seq += 1
        if call.first_route is None:
            call.first_route = route.name
        first_fallback = route.name != call.first_route and not call.fell_back
        call.fell_back = call.fell_back or first_fallback
        local = provider_config.kind == "local"
        model = (
            self.local.model_for(call.req.task) if local and self.local else route.model
        ) or route.provider
        usage = reply.usage if reply else Usage()
        return AttemptFacts(
            route=f"{route.provider}/{model}",
            provider=route.provider,
            request_model=model,
            response_model=reply.model if reply else model,
            call_attempt=call.seq,
            breaker_state=self.breaker_state(route.name).value,
            prompt_version=self._prompt_version_of(call.req.task, provider_config, call.task_policy),
            latency_ms=latency_ms,
            started_at=started,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            cost_usd=cost,
            cache_status=cache_status,
            error=error,
            fell_back=first_fallback,
            **self._previews(call.req, reply.output if reply else None),
        )

    def _previews(self, req: ModelRequest, output: Any) -> dict[str, Any]:
        """Masked previews of what the model saw and said: enough to debug an event, never raw PII."""
        prompt, masked_in = self._redactor.preview(_prompt_text(req))
        answer, masked_out = self._redactor.preview(_output_text(output)) if output is not None else ("", 0)
        return {"input_preview": prompt, "output_preview": answer, "redactions": masked_in + masked_out}

    # -- the local tier's batch path --------------------------------------------------------------

    async def _run_local_batch(
        self, requests: Sequence[ModelRequest], route: Route, policy: Policy, traces: list[TraceRecord]
    ) -> list[ModelResponse | GatewayError]:
        """One local call for the whole batch; if it fails, each request alone (so one poisonous input
        cannot fail its neighbours), and a request that still fails walks the remaining routes."""
        assert self.local is not None, "the policy routes to the local provider but none is loaded"
        task = requests[0].task
        task_policy = policy.task(task)
        started, t0 = datetime.now(UTC), time.perf_counter()
        try:
            async with asyncio.timeout(task_policy.deadline_s):
                results = await self.local.run(task, requests)
        except Exception as exc:
            log.warning("gateway_batch_failed", task=task, size=len(requests), error=repr(exc))
            served = [await self._serve_or_error(r, traces) for r in requests]
            return list(served)
        latency_ms = (time.perf_counter() - t0) * 1000  # each request waited for the whole batch
        out: list[ModelResponse | GatewayError] = []
        provider_config = policy.providers[route.provider]
        for req, result in zip(requests, results, strict=True):
            call = _Call(req, policy, task_policy, 0.0, traces)
            reply = Reply(
                result.output, Usage(result.input_tokens, result.output_tokens), self.local.model_for(task)
            )
            out.append(
                self._succeed(
                    call,
                    route,
                    provider_config,
                    reply,
                    None,
                    started,
                    t0,
                    latency_ms=latency_ms,
                    cache_status="hit" if result.cached else "miss",
                )
            )
        return out

    # -- one embeddings request for a batch ---------------------------------------------------------

    async def _run_remote_embed_batch(
        self, requests: Sequence[ModelRequest], route: Route, policy: Policy, traces: list[TraceRecord]
    ) -> list[ModelResponse | GatewayError]:
        """One embeddings request per tenant (up to MAX_BATCH_INPUTS inputs) instead of one per
        event: OpenAI-style APIs take a list of inputs. Per call, the event loop builds, sends and
        reads a request and decodes its JSON, and meanwhile every other answer in flight waits: at
        32 events a batch that wait, not the provider, was what slowed a stage. Each event still
        gets its own trace, with the call's input tokens (and so its cost) split by input length.
        Exact-cache hits are served first, and a text a tenant sends twice in one batch is sent
        once (the twin is traced as coalesced, as on the one-request path). Restricted data and
        every request of a batch call that failed take the one-request path, which has the retries
        and the fallbacks."""
        task_policy = policy.task(requests[0].task)
        out: list[ModelResponse | GatewayError | None] = [None] * len(requests)
        groups: list[list[int]] = []  # one call each: one tenant, at most MAX_BATCH_INPUTS inputs
        open_group: dict[str, list[int]] = {}  # per tenant, the group still taking requests
        open_inputs: dict[str, int] = {}  # and how many inputs it holds
        firsts: dict[tuple[str, tuple[str, ...]], int] = {}
        twins: list[tuple[int, int]] = []  # (request, the earlier request with the same inputs)
        alone: list[int] = []
        keys: dict[int, str] = {}  # cache key of every grouped request, when the task is cached
        for i, req in enumerate(requests):
            tenant = req.context.tenant_id
            if req.context.sensitivity == "restricted":
                alone.append(i)
                continue
            if task_policy.cache_ttl_s is not None:
                keys[i] = self._cache_key(req)  # hashed once: looked up now, stored after the call
                cached = self._cached(keys[i], req, task_policy, traces)
                if cached is not None:
                    out[i] = cached
                    continue
            first = firsts.setdefault((tenant, req.inputs), i)
            if first != i:
                twins.append((i, first))  # sent once, as the one-request path coalesces them
                continue
            if tenant not in open_group or open_inputs[tenant] + len(req.inputs) > MAX_BATCH_INPUTS:
                open_group[tenant], open_inputs[tenant] = [], 0
                groups.append(open_group[tenant])
            open_group[tenant].append(i)
            open_inputs[tenant] += len(req.inputs)
        started, t0 = datetime.now(UTC), time.perf_counter()
        await asyncio.gather(
            *(self._embed_group(requests, group, route, policy, traces, out, keys) for group in groups),
            *(self._serve_into(requests[i], traces, out, i) for i in alone),
        )
        orphans = []  # twins of a request that failed: each finds out alone
        for i, first in twins:
            answer = out[first]
            if isinstance(answer, ModelResponse):
                out[i] = self._reuse(requests[i], answer, "coalesced", started, t0, traces)
            else:
                orphans.append(i)
        await asyncio.gather(*(self._serve_into(requests[i], traces, out, i) for i in orphans))
        answered: list[ModelResponse | GatewayError] = []
        for answer in out:
            assert answer is not None, "every request of the batch is answered"
            answered.append(answer)
        return answered

    def _cached(
        self, key: str, req: ModelRequest, task_policy: TaskPolicy, traces: list[TraceRecord]
    ) -> ModelResponse | None:
        """The exact cache's answer under ``key``, traced as a hit; None when the task is not
        cached or nothing is stored."""
        if task_policy.cache_ttl_s is None:
            return None
        started, t0 = datetime.now(UTC), time.perf_counter()
        hit = self._cache.get(key)
        return None if hit is None else self._reuse(req, hit, "hit", started, t0, traces)

    def _cache_key(self, req: ModelRequest) -> str:
        return request_key(
            req.context.tenant_id, req.task, self._policy.fingerprint, _cache_texts(req), _cache_extra(req)
        )

    async def _serve_into(
        self,
        req: ModelRequest,
        traces: list[TraceRecord],
        out: list[ModelResponse | GatewayError | None],
        i: int,
        after: _Call | None = None,
    ) -> None:
        out[i] = await self._serve_or_error(req, traces, after)

    async def _embed_group(
        self,
        requests: Sequence[ModelRequest],
        group: list[int],
        route: Route,
        policy: Policy,
        traces: list[TraceRecord],
        out: list[ModelResponse | GatewayError | None],
        keys: dict[int, str],
    ) -> None:
        reqs = [requests[i] for i in group]
        task_policy = policy.task(reqs[0].task)
        provider_config = policy.providers[route.provider]
        deadline = time.monotonic() + task_policy.deadline_s
        calls = [_Call(req, policy, task_policy, deadline, traces) for req in reqs]
        # the whole group as one request: its prompt size reserves budget and rate-limit tokens
        combined = replace(reqs[0], parts=tuple(text for req in reqs for text in req.inputs))
        call = _Call(combined, policy, task_policy, deadline, [])
        breaker = self._breaker(route)
        started, t0 = datetime.now(UTC), time.perf_counter()
        try:
            reservation = self._reserve(call, route, provider_config)
        except (AttemptError, GatewayError):
            reservation, reply = None, None  # over a cap or a budget: each event finds out alone
        else:
            try:
                if not breaker.allow():
                    raise BreakerOpen(f"circuit of {route.name} is open")
                reply = await self._attempt(call, route, provider_config, call.remaining())
            except AttemptError as exc:
                reply = None
                if not isinstance(exc, BREAKER_NEUTRAL):
                    breaker.record(ok=False)
                log.warning("gateway_batch_failed", task=combined.task, size=len(reqs), error=repr(exc))
                for each in calls:
                    self._record_failure(each, route, provider_config, exc, time.perf_counter() - t0, started)
        if reply is None:
            if reservation is not None:
                self.budget.settle(reservation, Decimal(0))
            alone = zip(group, reqs, calls, strict=True)
            await asyncio.gather(*(self._serve_into(req, traces, out, i, each) for i, req, each in alone))
            return
        breaker.record(ok=True)
        latency_ms = (time.perf_counter() - t0) * 1000  # each event waited for the whole call
        tokens = split_by_weight(reply.usage.input_tokens, [sum(map(len, r.inputs)) for r in reqs])
        spent = Decimal(0)
        row = 0
        for i, req, each, input_tokens in zip(group, reqs, calls, tokens, strict=True):
            rows = len(req.inputs)
            part = Reply(reply.output[row : row + rows], Usage(input_tokens=input_tokens), reply.model)
            row += rows
            response = self._succeed(
                each, route, provider_config, part, None, started, t0, latency_ms=latency_ms
            )
            spent += response.cost_usd or Decimal(0)
            if task_policy.cache_ttl_s is not None:
                self._cache.put(keys[i], response, task_policy.cache_ttl_s)
            out[i] = response
        if reservation is not None:
            self.budget.settle(reservation, spent)

    # -- parts ------------------------------------------------------------------------------------

    def _price_key(self, route: Route, model: str | None = None) -> str:
        return f"{route.provider}/{model or route.model}"

    def _breaker(self, route: Route) -> CircuitBreaker:
        breaker = self._breakers.get(route.name)
        if breaker is None or breaker.config != self.policy.breaker:
            breaker = self._breakers[route.name] = CircuitBreaker(self.policy.breaker)
        return breaker

    def _limits_for(self, name: str, config: ProviderConfig) -> ProviderLimits:
        limits = self._limits.get((name, config))
        if limits is None:
            limits = self._limits[(name, config)] = ProviderLimits(config)
        return limits

    def _provider(self, name: str, config: ProviderConfig) -> HttpProvider:
        provider = self._providers.get((name, config))
        if provider is None:
            kind = OpenAIProvider if config.kind == "openai" else AnthropicProvider
            provider = self._providers[(name, config)] = kind(name, config, self._secrets)
        return provider

    def _backoff(self, policy: Policy, retry: int, error: AttemptError) -> float:
        """Full jitter (a random pause up to the exponential bound), or what Retry-After asked if longer."""
        bound = min(policy.retry.cap_s, policy.retry.base_s * 2**retry)
        pause = random.uniform(0, bound)
        if isinstance(error, RateLimited) and error.retry_after_s is not None:
            pause = max(pause, error.retry_after_s)
        return pause


def _batchable_remote(policy: Policy, task_policy: TaskPolicy) -> bool:
    """Whether one call can answer a batch: its first route is remote, and no per-event choice
    (weighted arms, a semantic-cache lookup) could send events of the batch different ways."""
    first = task_policy.routes[0]
    weighted = sum(route.weight is not None for route in task_policy.routes)
    return (
        policy.providers[first.provider].kind != "local"
        and task_policy.semantic_threshold is None
        and weighted < 2
    )


def split_by_weight(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` in whole parts proportional to ``weights`` that add up to ``total`` exactly (the
    largest remainders round up), so per-event tokens sum to what the provider billed."""
    if not weights:
        return []
    whole = sum(weights)
    if whole <= 0:
        weights, whole = [1] * len(weights), len(weights)
    shares = [total * w // whole for w in weights]
    rest = total - sum(shares)
    by_remainder = sorted(range(len(weights)), key=lambda k: -(total * weights[k] % whole))
    for k in by_remainder[:rest]:
        shares[k] += 1
    return shares


def _pick_arm(arms: Sequence[Route], event_id: str) -> Route:
    """Weighted choice, stable per event: the same event (or its replay) always lands on one arm."""
    total = sum(r.weight or 0 for r in arms)
    digest = hashlib.blake2b(event_id.encode(), digest_size=8).digest()
    point = int.from_bytes(digest, "big") / 2**64 * total
    for route in arms:
        point -= route.weight or 0
        if point < 0:
            return route
    return arms[-1]


def _chat_messages(req: ModelRequest, system: str) -> list[Message]:
    """The caller's messages (or its text as the user turn), behind the task's system prompt unless
    the caller brought its own."""
    messages = list(req.messages) or [Message("user", "\n\n".join(req.inputs))]
    if system and not any(m.role == "system" for m in messages):
        messages.insert(0, Message("system", system))
    return messages


def _output_text(output: Any) -> str:
    """Text of an answer for its preview: text as is, JSON as JSON, a label with its confidence,
    entities as label: text; vectors and score matrices have no useful preview."""
    if isinstance(output, str):
        return output
    if isinstance(output, dict):
        return json.dumps(output, default=str)[:2000]
    label = getattr(output, "label", None)
    if isinstance(label, str):
        confidence = getattr(output, "confidence", None)
        return f"{label} ({confidence:.3f})" if isinstance(confidence, float) else label
    if isinstance(output, list | tuple) and output and hasattr(output[0], "text"):
        return "; ".join(f"{getattr(e, 'label', '')}: {e.text}" for e in output)
    return ""


def _prompt_text(req: ModelRequest) -> str:
    if req.messages:
        return "\n".join(f"{m.role}: {m.content}" for m in req.messages)
    return "\n\n".join(req.inputs)


def _cache_texts(req: ModelRequest) -> tuple[Any, ...]:
    """The messages' (role, content) pairs and the inputs; a restricted request never shares an answer
    with an unrestricted one (it may have been served by another route)."""
    return (
        req.context.sensitivity == "restricted",
        tuple((m.role, m.content) for m in req.messages),
        req.inputs,
    )


def _cache_extra(req: ModelRequest) -> Any:
    return [req.json_schema, req.options] if req.json_schema or req.options else None


_VALIDATORS: dict[str, Any] = {}


def _validator(schema: dict[str, Any]) -> Any:
    """A compiled validator per distinct schema: ``jsonschema.validate`` re-checks the schema against
    its meta-schema on every call, which was a fifth of a busy worker's CPU."""
    key = json.dumps(schema, sort_keys=True)
    validator = _VALIDATORS.get(key)
    if validator is None:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        validator = _VALIDATORS[key] = cls(schema)
    return validator


def _structured(reply: Reply, schema: dict[str, Any]) -> Reply:
    """Parse and validate structured output; a model that ignored the schema is a malformed answer."""
    try:
        value = json.loads(reply.output)
        _validator(schema).validate(value)
    except (TypeError, ValueError, jsonschema.ValidationError) as exc:
        message = exc.message if isinstance(exc, jsonschema.ValidationError) else str(exc)
        raise MalformedResponse(f"output does not match the schema: {message}") from exc
    return Reply(value, reply.usage, reply.model, reply.extra)


TRANSIENT = frozenset(
    cls.__name__
    for cls in (
        ProviderTimeout,
        ProviderUnavailable,
        RateLimited,
        BreakerOpen,
        DeadlineExceeded,
        MalformedResponse,
    )
)


def _retryable(failed: Sequence[FailedAttempt]) -> bool:
    """Worth another delivery later if some route failed for a reason that passes with time, and no
    route rejected the request itself."""
    classes = {a.error_class for a in failed}
    return bool(classes & TRANSIENT) and ContentRejected.__name__ not in classes
