"""The gateway's error model: what went wrong on one attempt, and what the gateway does about it.

Every provider failure is classified once, here, into one of three dispositions, so the rules are
readable in one place instead of scattered over ``except`` clauses:

* ``RETRY``    — the same route may answer next time (timeouts, connection drops, 429, 5xx);
* ``FALLBACK`` — this route will not answer this request, another might (malformed or wrongly shaped
  body, auth failure, open breaker, context window too small, over the route's cost cap);
* ``FAIL``     — no route will answer: the request itself is bad (400-class content errors), so
  trying elsewhere only burns money.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Disposition(StrEnum):
    RETRY = "retry"
    FALLBACK = "fallback"
    FAIL = "fail"


class AttemptError(Exception):
    """One attempt at one route failed. Subclasses fix the disposition."""

    disposition = Disposition.FALLBACK

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ProviderTimeout(AttemptError):
    disposition = Disposition.RETRY


class ProviderUnavailable(AttemptError):
    """Connection refused or dropped, or a 5xx: the provider may be back on the next attempt."""

    disposition = Disposition.RETRY


class RateLimited(AttemptError):
    disposition = Disposition.RETRY

    def __init__(self, message: str, *, status: int | None = 429, retry_after_s: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after_s = retry_after_s


class MalformedResponse(AttemptError):
    """Unparseable, truncated, or wrongly shaped body; or structured output failing its schema."""


class AuthFailed(AttemptError):
    """401/403: retrying with the same key cannot help, another provider might."""


class ContextOverflow(AttemptError):
    """The prompt does not fit this model: only a route with a larger context window may help."""


class ContentRejected(AttemptError):
    """A 400-class error about the request itself: every route would reject it."""

    disposition = Disposition.FAIL


class BreakerOpen(AttemptError):
    """The route's circuit is open: skipped without a call."""


class OverCostCap(AttemptError):
    """The route's worst-case cost exceeds its ``max_cost_usd``: skipped without a call."""


class DeadlineExceeded(AttemptError):
    """The call's overall deadline left no time for this attempt."""

    disposition = Disposition.FAIL


class GatewayError(RuntimeError):
    """A request could not be answered. ``retryable`` tells a workflow whether to try again later
    (the event goes to its retry topic) or give up (dead-letter queue)."""

    def __init__(self, message: str, *, task: str, retryable: bool) -> None:
        super().__init__(message)
        self.task = task
        self.retryable = retryable


@dataclass(frozen=True)
class FailedAttempt:
    route: str
    attempt: int
    error_class: str
    message: str


class AllRoutesFailed(GatewayError):
    """Every eligible route failed; ``attempts`` lists each one, in order, with its reason."""

    def __init__(self, task: str, attempts: list[FailedAttempt], *, retryable: bool) -> None:
        lines = "; ".join(f"{a.route}#{a.attempt} {a.error_class}: {a.message}" for a in attempts)
        super().__init__(f"{task}: every route failed ({lines})", task=task, retryable=retryable)
        self.attempts = attempts


class NoEligibleRoute(GatewayError):
    """No route may serve this request (e.g. restricted data and no local route): a policy problem,
    not a transient one, so it is not retryable."""

    def __init__(self, task: str, reason: str) -> None:
        super().__init__(f"{task}: no eligible route: {reason}", task=task, retryable=False)


class BudgetExceeded(GatewayError):
    """The tenant's budget for the period cannot cover the call's worst-case cost. Retrying later (the
    next period) may succeed, so a workflow may park the event in its retry topic, skip the step, or
    dead-letter it."""

    def __init__(self, task: str, tenant: str, needed: object, remaining: object) -> None:
        super().__init__(
            f"{task}: budget of tenant {tenant!r} exhausted (needs {needed}, {remaining} left)",
            task=task,
            retryable=True,
        )
        self.tenant = tenant
