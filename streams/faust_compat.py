"""Fill a batch from events already queued without one event-loop pass per event.

Faust's compiled stream iterator (``faust/_cython/streams.pyx``, ``StreamIterator.next``) does
``await sleep(0)`` before it takes each event off the stream's queue. That yield is there so a
stream whose body never suspends cannot starve the loop; its price is one full pass of the event
loop per event. The worker's agents take batches of 16 with ``noack_take``, and with 256 tickets in
flight the loop is busy with hundreds of HTTP answers, so every pass is slow and a freed batch slot
waited while the next 16 events, already queued, trickled into the buffer: 14.5-14.6 of 16 slots
were working on average, against 15.4-15.5 without the yield (2026-11-24, docs/architecture.md).
On an idle loop the test counts 20 passes to fill a batch of 16 with the yield and 3 without.

Without the yield the take's filler moves up to a batch's worth of queued events into the buffer in
one go and still suspends where it must: ``noack_take``'s filler waits once its buffer is full
(and while the agent consumes it), and the queue's ``get`` waits when nothing is queued. So no
stream of ours can starve the loop. A stream whose body never suspends would, which is why this is
installed by the worker app only (``streams.app.create_app``), whose agents all take batches.

The iterator looks ``sleep`` up as a global of its extension module on every call, so replacing that
global is enough. This reaches into faust-streaming's internals: pinned below 0.16, and
tests/test_faust_compat.py fails if batches fill one loop pass per event again. Without the
compiled module (``NO_CYTHON``) faust's pure-Python iterator is used and keeps its yield.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from faust import streams as _faust_streams

try:
    from faust._cython import streams as _compiled_streams
except ImportError:  # pragma: no cover - faust built without its extension
    _compiled_streams = None

log = structlog.get_logger(__name__)


async def _no_yield(delay: float, result: Any = None) -> Any:
    """Stands in for ``asyncio.sleep(0)``: returns without giving the loop a pass."""
    return result


def install_batch_fill_without_yield() -> bool:
    """Idempotent; False when faust runs without its compiled stream iterator (nothing changed)."""
    # faust picks its compiled iterator at import unless NO_CYTHON is set
    if _compiled_streams is None or getattr(_faust_streams, "_CStreamIterator", None) is None:
        log.info("faust_stream_iterator_not_compiled", effect="batches fill one loop pass per event")
        return False
    _compiled_streams.sleep = _no_yield
    return True


def uninstall_batch_fill_without_yield() -> None:
    """Restore faust's yield before every event (for tests and comparisons)."""
    if _compiled_streams is not None:
        _compiled_streams.sleep = asyncio.sleep


def batch_fill_without_yield() -> bool:
    return _compiled_streams is not None and getattr(_compiled_streams, "sleep", None) is _no_yield
