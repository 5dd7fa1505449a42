"""Broker restart mid-stream: the broker is stopped and started again on its data dir while tickets
flow through a running worker; every ticket published before, during and after gets its result.

A broker of its own (not the session's), so a failure here cannot take other tests down with it.
"""

from __future__ import annotations

import asyncio
import csv
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from streams import envelope as env
from streams import processes, stack
from streams.config import PROJECT_ROOT, Settings
from streams.offsets import end_offsets, reader_from
from streams.publish import Published, publish, ticket_drafts
from streams.topics import TICKET_TRIAGED
from tests.conftest import free_port, run

BACKLOG_TICKETS = 2000


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


def banking77_test_rows() -> list[dict[str, str]]:
    with (PROJECT_ROOT / "infra/datasets/banking77/test.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def worker_busy_with(
    settings: Settings, rows: list[dict[str, str]], tmp_path: Path
) -> tuple[dict[TopicPartition, int], subprocess.Popen[bytes], list[Published]]:
    """A worker started on ``rows`` as tickets, returned once its first result is out: where the
    results topic stood before, the worker, and what was published."""
    start = run(end_offsets(settings.kafka_bootstrap, [TICKET_TRIAGED]))
    worker = processes.spawn(settings, "worker", ["worker"], log_path=tmp_path / "worker.log")
    try:
        published = run(publish(settings.kafka_bootstrap, ticket_drafts(rows, tenant="acme")))
        if not run(results_for(settings, start, {published[0].event_id}, timeout_s=180)):
            raise AssertionError(f"the worker produced no result; see {tmp_path / 'worker.log'}")
    except BaseException:
        processes.stop(worker.pid, timeout_s=30)
        raise
    return start, worker, published


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
    rows = [r for i, r in enumerate(banking77_test_rows()) if i % 11 == 0][:600]
    before_rows, after_rows = rows[:400], rows[400:]
    start, worker, before = worker_busy_with(settings, before_rows, tmp_path)
    try:
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


@pytest.mark.slow
def test_a_worker_sigtermed_while_the_broker_is_down_exits_in_seconds_and_loses_nothing(
    own_stack: Settings, tmp_path: Path
) -> None:
    """With every broker gone, the exit used to take 60-62 s by one of two waits (2026-11-24): the
    drain waited out ``shutdown_drain_s`` for batches that could not be acked (now given up after
    ``shutdown_broker_gone_s`` without a broker), or, with no batch stuck, Faust's consumer thread
    waited out mode's 60 s because it could neither leave its group nor close (now
    ``shutdown_consumer_timeout_s``). Default settings, so either old wait fails the bound."""
    settings = own_stack
    start, worker, published = worker_busy_with(settings, banking77_test_rows()[:BACKLOG_TICKETS], tmp_path)
    try:
        stack.down(settings)  # a backlog is left: the consumer thread is still fetching
        signalled = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        exit_code = worker.wait(timeout=120)
        took = time.monotonic() - signalled
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert took < 40, f"exit took {took:.1f}s after SIGTERM; see {tmp_path / 'worker.log'}"
    assert exit_code in (0, 75), f"exit code {exit_code}; see {tmp_path / 'worker.log'}"

    stack.up(settings)
    again = processes.spawn(settings, "worker", ["worker"], log_path=tmp_path / "worker-again.log")
    try:
        want = {p.event_id for p in published}
        done = run(results_for(settings, start, want, timeout_s=300))
    finally:
        processes.stop(again.pid, timeout_s=30)
    assert done == want, f"{len(want - done)} of {len(want)} tickets have no result"
