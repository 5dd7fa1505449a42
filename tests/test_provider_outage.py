"""A provider outage: the fake provider answers 503 for 60 s while tickets flow. Events whose
embedding or summary could not be made go through the retry topic, and complete once the provider is
back; none reach the DLQ while they have attempts left. The worker is the real one, in its own
process, with the policy routing the retrieve step's embeddings (one request per batch) and the
summarize step to the fake provider over HTTP."""

from __future__ import annotations

import asyncio
import csv
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from gateway.fake_provider import Behaviour, FakeProvider
from streams import envelope as env
from streams import processes
from streams.config import PROJECT_ROOT, Settings
from streams.offsets import end_offsets, reader_from
from streams.ops import commit_offsets
from streams.publish import publish, ticket_drafts
from streams.topics import TICKET_CREATED, TICKET_TRIAGED, dlq_topic, retry_topic
from tests.conftest import run

OUTAGE_S = 60
TICKETS = 120


def remote_summaries(path: Path, url: str) -> Path:
    local = "\n".join(
        f'[tasks.{task}]\ndeadline_s = 120\nroutes = [{{ provider = "local" }}]\n'
        for task in ("classify_intent", "classify_topic", "extract")
    )
    path.write_text(
        f"""
version = "outage-test"
[providers.local]
kind = "local"
[providers.llm]
kind = "openai"
base_url = "{url}/v1"
timeout_s = 5
{local}
[tasks.embed]
deadline_s = 4
routes = [{{ provider = "llm", model = "embedder", retries = 1, dimensions = 384 }}]
[tasks.summarize]
deadline_s = 4
system = "Summarize the ticket in one sentence."
routes = [{{ provider = "llm", model = "summarizer", retries = 1, max_tokens = 60 }}]
[retry]
base_s = 0.1
cap_s = 0.5
""",
        encoding="utf-8",
    )
    return path


async def collect(
    settings: Settings, start: dict[TopicPartition, int], want: set[str], timeout_s: float
) -> tuple[dict[str, list[str]], dict[str, dict[str, str]], int]:
    """Results by cause, dead letters by event id, and how many records passed the retry topic."""
    results: dict[str, list[str]] = defaultdict(list)
    dead: dict[str, dict[str, str]] = {}
    retried = 0
    consumer = await reader_from(settings.kafka_bootstrap, start)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while loop.time() < deadline and not want <= (results.keys() | dead.keys()):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    headers = env.header_map(r.headers)
                    if r.topic == TICKET_TRIAGED:
                        results[headers["ce_causationid"]].append(headers["ce_id"])
                    elif r.topic == retry_topic(TICKET_CREATED):
                        retried += 1
                    else:
                        dead[headers.get("ce_id", "")] = headers
        return results, dead, retried
    finally:
        await consumer.stop()


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


@pytest.mark.slow
def test_events_wait_out_a_provider_outage_and_complete(
    broker: Settings, trained_models: Path, provider: FakeProvider, tmp_path: Path
) -> None:
    settings = broker.model_copy(
        update={
            "app_id": "riverbed-outage-worker",
            "gateway_policy_file": remote_summaries(tmp_path / "routes.toml", provider.url),
            "retry_max_attempts": 6,
            "retry_backoff_base_s": 5.0,  # attempts at about 0, 5, 15, 35, 75 s: past a 60 s outage
            "retry_backoff_cap_s": 40.0,
        }
    )
    with (PROJECT_ROOT / "infra/datasets/banking77/test.csv").open(newline="") as fh:
        rows = [r for i, r in enumerate(csv.DictReader(fh)) if i % 17 == 0][:TICKETS]
    topics = [TICKET_TRIAGED, retry_topic(TICKET_CREATED), dlq_topic(TICKET_CREATED)]
    start = run(end_offsets(settings.kafka_bootstrap, topics))
    # a new group would start at the beginning of the topic: start it at the end, past earlier tests
    inputs = [TICKET_CREATED, retry_topic(TICKET_CREATED)]
    run(
        commit_offsets(
            settings.kafka_bootstrap, settings.app_id, run(end_offsets(settings.kafka_bootstrap, inputs))
        )
    )
    provider.set_default(Behaviour(status=503))
    outage_started = time.monotonic()
    worker = processes.spawn(settings, "outage-worker", ["worker"], log_path=tmp_path / "worker.log")
    try:
        published = run(publish(settings.kafka_bootstrap, ticket_drafts(rows, tenant="acme")))
        want = {p.event_id for p in published}

        async def outage_then_recovery() -> tuple[dict[str, list[str]], dict[str, dict[str, str]], int]:
            watcher = asyncio.create_task(collect(settings, start, want, timeout_s=300))
            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))
            provider.set_default(Behaviour(content="Customer asks about a card payment."))
            return await watcher

        results, dead, retried = run(outage_then_recovery())
        assert worker.poll() is None, "the worker must ride out the outage"
    finally:
        clean = processes.stop(worker.pid, timeout_s=30)
    assert clean, f"worker did not stop cleanly; see {tmp_path / 'worker.log'}"

    assert provider.count(status=503) > 0  # the outage was real: calls reached the provider and failed
    assert retried >= TICKETS  # every ticket failed at least once and went through the retry topic
    assert dead == {}
    assert set(results) == want
    assert provider.count(status=200) >= TICKETS
    # the retrieve step's embeddings went out a batch per request, in the outage and after it
    batches = [len(r.body["input"]) for r in provider.received("embedder")]
    assert max(batches) > 1 and sum(batches) >= TICKETS
