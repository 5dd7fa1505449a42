"""A floor on the interval between empty fetches, for brokers that ignore ``fetch_max_wait_ms``.

Apache Kafka holds an empty fetch for up to ``fetch_max_wait_ms`` (500 ms by default) before it
answers, so an idle consumer costs nothing. The embedded broker (noida-db 0.2.3) answers at once, and
aiokafka re-fetches immediately: measured here, one idle aiokafka consumer burned 80-83 % of a core
whatever ``fetch_max_wait_ms``/``fetch_min_bytes`` were set to, and faust's consumer thread ate a
whole core of the worker's two, halving model throughput.

The fix other clients ship (ruby-kafka, onyx-kafka) is client-side: after an empty fetch that came
back sooner than a floor, wait out the rest of the floor. It is broker-agnostic: against Kafka the
empty answer already took ``fetch_max_wait_ms`` (>= the floor), so nothing changes; a fetch that
returned data is never delayed. aiokafka has no option for it, so this wraps its fetcher's
per-request coroutine (a private method; pinned aiokafka <0.15 and covered by a test).
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

from aiokafka.consumer import fetcher as _fetcher

_ORIGINAL = _fetcher.Fetcher._proc_fetch_request
_state = {"floor_s": 0.0, "delayed": 0}


@functools.wraps(_ORIGINAL)
async def _proc_fetch_request_with_floor(self: Any, assignment: Any, node_id: Any, request: Any) -> Any:
    started = time.monotonic()
    got_data = await _ORIGINAL(self, assignment, node_id, request)
    remaining = _state["floor_s"] - (time.monotonic() - started)
    if not got_data and remaining > 0:
        _state["delayed"] += 1
        try:
            await asyncio.sleep(remaining)
        except asyncio.CancelledError:
            # Same contract as the wrapped method: close() or an unassignment cancels pending
            # fetches and awaits them; the result is of no interest any more.
            return False
    return got_data


def install_empty_fetch_floor(floor_ms: int) -> None:
    """Idempotent; ``floor_ms <= 0`` restores aiokafka's own behaviour."""
    _state["floor_s"] = max(floor_ms, 0) / 1000
    _fetcher.Fetcher._proc_fetch_request = _proc_fetch_request_with_floor if floor_ms > 0 else _ORIGINAL


def installed_floor_ms() -> int:
    active = _fetcher.Fetcher._proc_fetch_request is _proc_fetch_request_with_floor
    return round(_state["floor_s"] * 1000) if active else 0


def delayed_empty_fetches() -> int:
    """How often the floor applied in this process; non-zero means the broker ignores max wait."""
    return int(_state["delayed"])
