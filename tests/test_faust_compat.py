"""A batch of events already queued fills in a few event-loop passes, not one pass per event
(streams/faust_compat.py), and faust's own behaviour comes back when the patch is removed.

In-process: a faust stream over an in-memory channel, so no broker is needed (the app names an
unreachable one that is never contacted). A ticker task counts loop passes while ``noack_take``
fills its batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
import pytest

from streams.app import create_app
from streams.config import Settings
from streams.faust_compat import (
    batch_fill_without_yield,
    install_batch_fill_without_yield,
    uninstall_batch_fill_without_yield,
)

BATCH = 16


async def loop_passes_to_fill_a_batch() -> tuple[int, list[int]]:
    app = faust.App("faust-compat-test", broker="kafka://127.0.0.1:9", web_enabled=False)
    app.flow_control.resume()
    source = app.channel()
    subscriber = source.clone(is_iterator=True)
    stream: Any = app.stream(subscriber)  # faust's stubs lack noack_take
    for value in range(BATCH):
        await source.send(value=value)
    assert subscriber.queue.qsize() == BATCH

    passes = 0
    ticking = True

    async def ticker() -> None:
        nonlocal passes
        while ticking:
            passes += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    start = passes
    try:
        async for events in stream.noack_take(BATCH, within=5.0):
            return passes - start, [event.value for event in events]
        raise AssertionError("noack_take ended without a batch")
    finally:
        ticking = False
        await task


@pytest.fixture
def faust_yield_restored() -> Iterator[None]:
    """The suite's worker apps install the patch; leave it as it was found."""
    was_installed = batch_fill_without_yield()
    yield
    if was_installed:
        install_batch_fill_without_yield()
    else:
        uninstall_batch_fill_without_yield()


def test_queued_events_fill_a_batch_in_a_few_loop_passes(faust_yield_restored: None) -> None:
    assert install_batch_fill_without_yield(), "faust's compiled stream iterator is missing"
    assert batch_fill_without_yield()
    passes, values = asyncio.run(asyncio.wait_for(loop_passes_to_fill_a_batch(), 10))
    assert values == list(range(BATCH))  # every event, in order, none twice
    assert passes < BATCH // 2, f"{passes} loop passes for a batch of {BATCH}"


def test_without_the_patch_faust_yields_before_every_event(faust_yield_restored: None) -> None:
    """The control: what the patch is for. If faust stops yielding per event, this fails and the
    patch can go."""
    uninstall_batch_fill_without_yield()
    assert not batch_fill_without_yield()
    passes, values = asyncio.run(asyncio.wait_for(loop_passes_to_fill_a_batch(), 10))
    assert values == list(range(BATCH))
    assert passes >= BATCH


def test_the_worker_app_installs_it(faust_yield_restored: None, tmp_path: Path) -> None:
    uninstall_batch_fill_without_yield()
    create_app(Settings(data_dir=tmp_path))
    assert batch_fill_without_yield()
