"""A circuit breaker per provider+model that trips on the failure *ratio* over a time window.

Hand-written because the packaged breakers (pybreaker, aiobreaker, purgatory) count consecutive
failures: a provider failing 60 % of calls never produces a long enough streak to trip them, yet it is
exactly the provider a pipeline should stop hammering.

closed → open when, within ``window_s``, at least ``min_calls`` finished and the failed share reached
``failure_ratio``; open → half-open after ``open_s``; half-open lets ``half_open_probes`` calls through
and closes when they all succeed, re-opens on the first failure.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum

from gateway.policy import BreakerConfig


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(self, config: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._outcomes: deque[tuple[float, bool]] = deque()
        self._failures = 0
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._probes_out = 0
        self._probes_ok = 0

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.config.open_s:
            self._state, self._probes_out, self._probes_ok = BreakerState.HALF_OPEN, 0, 0
        return self._state

    def allow(self) -> bool:
        """May a call go out now? In half-open, each allowed call is one of the limited probes."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and self._probes_out < self.config.half_open_probes:
            self._probes_out += 1
            return True
        return False

    def record(self, ok: bool) -> None:
        now = self._clock()
        if self._state is BreakerState.HALF_OPEN:
            if not ok:
                self._open(now)
                return
            self._probes_ok += 1
            if self._probes_ok >= self.config.half_open_probes:
                self._close()
            return
        if self._state is BreakerState.OPEN:
            return  # a straggler that left before the breaker opened
        self._outcomes.append((now, ok))
        self._failures += not ok
        self._expire(now)
        calls = len(self._outcomes)
        if calls >= self.config.min_calls and self._failures / calls >= self.config.failure_ratio:
            self._open(now)

    def _expire(self, now: float) -> None:
        horizon = now - self.config.window_s
        while self._outcomes and self._outcomes[0][0] < horizon:
            _, ok = self._outcomes.popleft()
            self._failures -= not ok

    def _open(self, now: float) -> None:
        self._state, self._opened_at = BreakerState.OPEN, now
        self._outcomes.clear()
        self._failures = 0

    def _close(self) -> None:
        self._state = BreakerState.CLOSED
        self._outcomes.clear()
        self._failures = 0
