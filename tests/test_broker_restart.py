"""Broker restart mid-stream: the broker is stopped and started again on its data dir while tickets
flow through a running worker; every ticket published before, during and after gets its result.

A broker of its own (not the session's), so a failure here cannot take other tests down with it.
"""

from __future__ import annotations

import asyncio
import csv
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from streams import envelope as env
from streams import processes, stack
from streams.config import PROJECT_ROOT, Settings
from streams.offsets import end_offsets, reader_from
from streams.publish import publish, ticket_drafts
from streams.topics import TICKET_TRIAGED
from tests.conftest import free_port, run


async def results_for(
    settings: Settings, start: dict[TopicPartition, int], causes: set[str], timeout_s: float
) -> set[str]:
    consumer = await reader_from(settings.kafka_bootstrap, start)
    seen: set[str] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while seen < causes and loop.time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                seen |= {env.header_map(r.headers).get("ce_causationid", "") for r in records} & causes
        return seen
    finally:
        await consumer.stop()


@pytest.fixture
def own_stack(base_settings: Settings, trained_models: Path, tmp_path: Path) -> Iterator[Settings]:
    settings = base_settings.model_copy(
        update={
            "data_dir": tmp_path / "data",
            "kafka_bootstrap": f"127.0.0.1:{free_port()}",
            "app_id": "riverbed-restart",
            "worker_batch_size": 64,
        }
    )
    shutil.copytree(trained_models, settings.models_dir)
    stack.up(settings)
    try:
        yield settings
    finally:
        stack.down(settings)


@pytest.mark.slow
def test_no_ticket_is_lost_across_a_broker_restart(own_stack: Settings, tmp_path: Path) -> None:
    settings = own_stack
    with (PROJECT_ROOT / "infra/datasets/banking77/test.csv").open(newline="") as fh:
        rows = [r for i, r in enumerate(csv.DictReader(fh)) if i % 11 == 0][:600]
    before_rows, after_rows = rows[:400], rows[400:]
    start = run(end_offsets(settings.kafka_bootstrap, [TICKET_TRIAGED]))
    worker = processes.spawn(settings, "worker", ["worker"], log_path=tmp_path / "worker.log")
    try:
        before = run(publish(settings.kafka_bootstrap, ticket_drafts(before_rows, tenant="acme")))
        some = run(results_for(settings, start, {before[0].event_id}, timeout_s=180))
        assert some, "the worker should be processing before the restart"

        stack.down(settings)  # mid-stream: most of the 400 are still queued or in flight
        stack.up(settings)
        after = run(publish(settings.kafka_bootstrap, ticket_drafts(after_rows, tenant="acme")))

        want = {p.event_id for p in [*before, *after]}
        done = run(results_for(settings, start, want, timeout_s=240))
        assert worker.poll() is None, "the worker must ride out the restart"
    finally:
        clean = processes.stop(worker.pid, timeout_s=30)
    assert done == want, f"{len(want - done)} of {len(want)} tickets have no result"
    assert clean, f"worker did not stop cleanly; see {tmp_path / 'worker.log'}"
