"""kill -9 the worker five times while 5,000 tickets flow through two batches in flight per agent:
afterwards every ticket has exactly one result id, and ClickHouse holds exactly one trace row per
(event, step, attempt). The real worker process, broker, models, qdrant-edge and chdb throughout.

One concession to the embedded broker: noida-db 0.2.3 does not expire a SIGKILLed group member in
time (a restarted member waited 60 s to join) and was seen to die at the SyncGroup that followed.
So each restarted worker joins a fresh consumer group that starts exactly at the committed offsets
of the killed one, which is what Kafka's coordinator hands a restarted member. What is under test
is unchanged: the offsets the killed worker committed never pass an event whose output is missing.
"""

from __future__ import annotations

import csv
import os
import random
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from sinks.clickhouse import connect, migrate
from sinks.service import ClickHouseSink
from streams import envelope as env
from streams import processes
from streams.config import PROJECT_ROOT, Settings
from streams.offsets import end_offsets, reader_from
from streams.ops import commit_offsets, committed_offsets
from streams.publish import publish, ticket_drafts
from streams.topics import AI_TRACES, INPUT_TOPICS, TICKET_TRIAGED, retry_topic
from tests.conftest import drain_sink, run

TICKETS = 5000
KILLS = 5
STEPS = ("classify", "extract", "retrieve", "summarize")


class Downstream:
    """Reads results and traces from fixed start offsets, like a downstream consumer would."""

    def __init__(self, settings: Settings, start: dict[TopicPartition, int]) -> None:
        self.settings = settings
        self.start = start
        self.result_ids: dict[str, set[str]] = defaultdict(set)
        self.result_records = 0

    async def read_until(self, want: set[str], timeout_s: float) -> None:
        consumer = await reader_from(self.settings.kafka_bootstrap, self.start)
        deadline = time.monotonic() + timeout_s
        try:
            while not want <= self.result_ids.keys() and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=300, max_records=5000)).values():
                    for r in records:
                        if r.topic != TICKET_TRIAGED:
                            continue
                        h = env.header_map(r.headers)
                        self.result_ids[h["ce_causationid"]].add(h["ce_id"])
                        self.result_records += 1
            self.start = {tp: await consumer.position(tp) for tp in self.start}
        finally:
            await consumer.stop()


async def _carry_offsets(bootstrap: str, old_group: str, new_group: str) -> int:
    """Start ``new_group`` where ``old_group`` committed; returns how many offsets that skips."""
    topics = [t for base in INPUT_TOPICS for t in (base, retry_topic(base))]
    committed = await committed_offsets(bootstrap, old_group, topics)
    offsets = {tp: o for tp, o in committed.items() if o is not None}
    await commit_offsets(bootstrap, new_group, offsets)
    return sum(offsets.values())


def _tickets() -> list[dict[str, str]]:
    with (PROJECT_ROOT / "infra/datasets/banking77/test.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [{**rows[i % len(rows)], "ticket_id": f"K{i:05d}"} for i in range(TICKETS)]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_9_five_times_loses_nothing_and_double_counts_nothing(
    broker: Settings, trained_models: Path, tmp_path: Path
) -> None:
    base = broker.model_copy(update={"worker_inflight_batches": 2})
    group = "riverbed-crash-0"
    settings = base.model_copy(update={"app_id": group})
    start = run(end_offsets(settings.kafka_bootstrap, [TICKET_TRIAGED, AI_TRACES]))
    published = run(publish(settings.kafka_bootstrap, list(ticket_drafts(_tickets(), tenant="crash"))))
    ids = {p.event_id for p in published}
    downstream = Downstream(settings, start)
    rng = random.Random(606)
    kills = 0
    resumed: list[int] = []
    worker = None
    try:
        while kills < KILLS:
            log = tmp_path / f"worker-{kills}.log"
            worker = processes.spawn(
                base.model_copy(update={"app_id": group}), "worker", ["worker"], log_path=log
            )
            before = len(downstream.result_ids)
            # Let the worker get going (models loaded, some results out), then kill it mid-stream.
            run(downstream.read_until(ids, timeout_s=5))
            first_progress = time.monotonic() + 90
            while len(downstream.result_ids) == before and time.monotonic() < first_progress:
                run(downstream.read_until(ids, timeout_s=1))
            assert len(downstream.result_ids) > before, f"no progress; see {log}"
            run(downstream.read_until(ids, timeout_s=rng.uniform(0.5, 4.0)))
            if ids <= downstream.result_ids.keys():
                processes.stop(worker.pid, timeout_s=30)
                break
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
            kills += 1
            previous, group = group, f"riverbed-crash-{kills}"
            resumed.append(run(_carry_offsets(settings.kafka_bootstrap, previous, group)))
        assert kills == KILLS, f"only {kills} kills before all {TICKETS} tickets were done: slow the kills"
        # the test means something only if the killed workers had committed progress to resume from
        # and each restart resumed at or after where the one before it had got to
        assert resumed == sorted(resumed) and resumed[-1] > 0, f"committed offsets carried over: {resumed}"
        final = base.model_copy(update={"app_id": group})
        worker = processes.spawn(final, "worker", ["worker"], log_path=tmp_path / "worker-final.log")
        try:
            run(downstream.read_until(ids, timeout_s=180))
        finally:
            assert processes.stop(worker.pid, timeout_s=60), "final worker did not stop cleanly"
    finally:
        if worker is not None and worker.poll() is None:  # a failed assertion left one running
            processes.stop(worker.pid, timeout_s=30)
        processes.pid_file(settings, "worker").unlink(missing_ok=True)

    missing = ids - downstream.result_ids.keys()
    assert not missing, f"{len(missing)} tickets without a result"
    assert all(len(downstream.result_ids[eid]) == 1 for eid in ids), "a ticket got two different result ids"
    # kill -9 mid-batch means redelivery: more result records than tickets, deduplicated by id
    print(f"{downstream.result_records} result records for {TICKETS} tickets after {kills} kills")

    client = connect(settings.effective_clickhouse_dsn, "crash")
    try:
        migrate(client)
        drain_sink(ClickHouseSink(settings.model_copy(update={"app_id": "riverbed-crash-sink"}), client), 180)
        rows = client.query_rows(
            "SELECT step, attempt, count(), uniqExact(event_id) FROM traces FINAL "
            "WHERE tenant_id = 'crash' GROUP BY step, attempt ORDER BY step, attempt"
        )
    finally:
        client.close()
    assert {(step, attempt) for step, attempt, _, _ in rows} == {(step, 1) for step in STEPS}
    for _step, _attempt, count, events in rows:
        assert count == events == TICKETS
