"""The processed-events table: a redelivered event whose result is already durable is not worked again
(its model calls are not paid twice), while an operator's replay always runs.

The end-to-end test uses the real worker in its own process, the real broker, and the fake provider
on loopback for the summarize step, whose request log counts the model calls actually made."""

from __future__ import annotations

import csv
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from gateway.fake_provider import Behaviour, FakeProvider
from streams import envelope as env
from streams import processes
from streams.config import PROJECT_ROOT, Settings
from streams.offsets import end_offsets, reader_from
from streams.ops import commit_offsets, committed_offsets
from streams.processed import ProcessedEvents
from streams.publish import publish, ticket_drafts
from streams.topics import TICKET_CREATED, TICKET_TRIAGED, retry_topic
from tests.conftest import cli, run, wait_until
from tests.test_provider_outage import remote_summaries

TICKETS = 30


def test_window_and_cap_evict_the_oldest() -> None:
    now = time.time()
    table = ProcessedEvents(window_s=60, max_entries=3)
    ids = [str(uuid.uuid4()) for _ in range(5)]
    table.add(ids[0], now - 120)  # already outside the window: not kept
    assert ids[0] not in table
    for i in ids[1:]:
        table.add(i, now)
    assert len(table) == 3 and ids[1] not in table and all(i in table for i in ids[2:])
    stale = ProcessedEvents(window_s=60, max_entries=10)
    stale.add(ids[0], now - 59)
    stale._evict(now + 2)  # the entry ages past the window
    assert ids[0] not in stale


async def results_by_cause(settings: Settings, start: dict[TopicPartition, int]) -> Counter[str]:
    """Every result record after ``start`` (up to the current end), counted per causing event."""
    ends = await end_offsets(settings.kafka_bootstrap, [TICKET_TRIAGED])
    counts: Counter[str] = Counter()
    behind = {tp for tp, end in ends.items() if end > start[tp]}
    if not behind:  # (an aiokafka consumer stopped right after it started raises CancelledError)
        return counts
    consumer = await reader_from(settings.kafka_bootstrap, start)
    try:
        while behind:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    if r.offset < ends[TopicPartition(r.topic, r.partition)]:
                        counts[env.header_map(r.headers)["ce_causationid"]] += 1
            behind = {tp for tp in behind if await consumer.position(tp) < ends[tp]}
        return counts
    finally:
        await consumer.stop()


def group_caught_up(settings: Settings, ends: dict[TopicPartition, int]) -> bool:
    committed = run(committed_offsets(settings.kafka_bootstrap, settings.app_id, [TICKET_CREATED]))
    return all((committed.get(tp) or 0) >= end for tp, end in ends.items())


@pytest.mark.slow
def test_redelivered_events_are_not_paid_twice_but_replays_run(
    broker: Settings, trained_models: Path, tmp_path: Path
) -> None:
    with FakeProvider() as provider:
        provider.set_default(Behaviour(content="Customer asks about a card payment."))
        settings = broker.model_copy(
            update={
                "app_id": "riverbed-processed-worker",
                "gateway_policy_file": remote_summaries(tmp_path / "routes.toml", provider.url),
            }
        )
        inputs = [TICKET_CREATED, retry_topic(TICKET_CREATED)]
        input_start = run(end_offsets(settings.kafka_bootstrap, [TICKET_CREATED]))
        run(
            commit_offsets(
                settings.kafka_bootstrap, settings.app_id, run(end_offsets(settings.kafka_bootstrap, inputs))
            )
        )
        result_start = run(end_offsets(settings.kafka_bootstrap, [TICKET_TRIAGED]))
        with (PROJECT_ROOT / "infra/datasets/banking77/test.csv").open(newline="") as fh:
            rows = [r for i, r in enumerate(csv.DictReader(fh)) if i % 31 == 0][:TICKETS]

        def run_worker(name: str, until: Callable[[], bool]) -> None:
            worker = processes.spawn(settings, name, ["worker"], log_path=tmp_path / f"{name}.log")
            try:
                wait_until(until, 180, f"{name} to finish its work", interval_s=0.5)
            finally:
                assert processes.stop(worker.pid, timeout_s=30), f"see {tmp_path / name}.log"

        published = run(publish(settings.kafka_bootstrap, ticket_drafts(rows, tenant="acme")))
        want = {p.event_id for p in published}
        input_end = run(end_offsets(settings.kafka_bootstrap, [TICKET_CREATED]))

        run_worker("first", lambda: set(run(results_by_cause(settings, result_start))) >= want)
        first_calls = provider.count(status=200)
        assert first_calls >= TICKETS  # every ticket's summary was a real call to the provider

        # redelivery: the group is set back to before the tickets, as after a crash before a commit
        run(commit_offsets(settings.kafka_bootstrap, settings.app_id, input_start))
        run_worker("redelivered", lambda: group_caught_up(settings, input_end))
        assert provider.count(status=200) == first_calls, "a redelivered, already-done event was paid again"
        assert run(results_by_cause(settings, result_start)) == Counter({eid: 1 for eid in want})
        assert "already_processed_skipped" in (tmp_path / "redelivered.log").read_text()

        # an operator's replay of the same events runs them again
        ids = [arg for eid in sorted(want) for arg in ("--event-id", eid)]
        replayed = cli(settings, "replay", TICKET_CREATED, *ids)
        assert replayed.returncode == 0, replayed.stderr
        run_worker(
            "replayed",
            lambda: (
                all(n == 2 for n in run(results_by_cause(settings, result_start)).values())
                and set(run(results_by_cause(settings, result_start))) >= want
            ),
        )
        assert provider.count(status=200) >= first_calls + TICKETS
