"""The ticket workflow in-process: every step goes to the fake provider (a real HTTP server on
loopback). The summary is asked for beside the similar-ticket search, so a search that fails costs
the summary call, but its tickets still fail at the retrieve step (retryable) and none gets a
result. The store is the real embedded engine (qdrant-edge); the one that refuses is a stand-in,
as the real engines cannot be made to fail on demand."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from agents.deps import WorkflowDeps
from agents.outcome import BatchOutcome, InboundEvent, WorkItem
from agents.tickets import triage
from gateway.fake_provider import Behaviour, FakeProvider
from gateway.gateway import Gateway
from gateway.policy import PolicyStore
from sinks.vectors.base import BatchSearchingStore, SearchQuery, VectorHit, VectorPoint, VectorStore
from sinks.vectors.edge import EdgeVectorStore
from streams import envelope as env
from streams.config import Settings
from streams.inflight import Turn
from streams.topics import TICKET_CREATED

POLICY = """
version = "workflow-test"
[providers.llm]
kind = "openai"
base_url = "{url}/v1"
timeout_s = 10
[tasks.classify_intent]
routes = [{{ provider = "llm", model = "intent", retries = 0 }}]
[tasks.extract]
routes = [{{ provider = "llm", model = "entities", retries = 0 }}]
[tasks.embed]
routes = [{{ provider = "llm", model = "embedder", dimensions = 384, retries = 0 }}]
[tasks.summarize]
routes = [{{ provider = "llm", model = "summary", retries = 0 }}]
"""


class UnreachableStore(BatchSearchingStore):
    """Every search and write raises, as a store that cannot be reached does."""

    def ensure_collection(self, dimensions: int) -> None:
        pass

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        raise ConnectionError("vector store unreachable (test)")

    def search_many(self, queries: Sequence[SearchQuery]) -> list[list[VectorHit]]:
        raise ConnectionError("vector store unreachable (test)")

    def count(self, tenant_id: str | None = None) -> int:
        return 0

    def close(self) -> None:
        pass


def tickets(count: int) -> list[WorkItem]:
    items = []
    for n in range(count):
        data: dict[str, Any] = {
            "tenant_id": "acme",
            "ticket_id": f"W{n}",
            "subject": None,
            "body": f"My card number {n} has not arrived yet",
            "channel": "email",
            "customer_id": None,
            "sensitivity": "internal",
            "created_at": datetime.now(UTC),
            "metadata": {},
        }
        value, headers, _ = env.encode_event(TICKET_CREATED, data)
        inbound = InboundEvent(TICKET_CREATED, 0, n, None, value, tuple(headers))
        items.append(
            WorkItem(inbound, env.decode_event(TICKET_CREATED, value, env.header_map(headers), 1 << 20))
        )
    return items


def run_triage(tmp_path: Path, fake: FakeProvider, store: VectorStore, count: int) -> BatchOutcome:
    for model, content in {
        "intent": '{"label": "card_arrival", "confidence": 0.9}',
        "entities": '{"entities": []}',
        "summary": "Customer asks where the card is.",
    }.items():
        fake.set_default(Behaviour(content=content), model=model)
    policy_file = tmp_path / "routes.toml"
    policy_file.write_text(POLICY.format(url=fake.url), encoding="utf-8")
    settings = Settings(data_dir=tmp_path)

    async def go() -> BatchOutcome:
        async with httpx.AsyncClient() as http:
            gateway = Gateway(policy=PolicyStore(policy_file))
            deps = WorkflowDeps(settings=settings, gateway=gateway, vectors=store, http=http)
            return await triage(tickets(count), deps, Turn())

    return asyncio.run(go())


def steps_traced(outcome: BatchOutcome) -> Counter[str]:
    return Counter(str(trace["step"]) for trace in outcome.traces)


def test_every_ticket_gets_a_result_with_its_summary_and_its_point_stored(
    tmp_path: Path, fake: FakeProvider
) -> None:
    store = EdgeVectorStore(tmp_path / "qdrant", "tickets")
    try:
        store.ensure_collection(384)
        outcome = run_triage(tmp_path, fake, store, 6)
        assert len(outcome.results) == 6 and not outcome.failures
        assert store.count("acme") == 6
    finally:
        store.close()
    assert steps_traced(outcome) == {"classify": 6, "extract": 6, "retrieve": 6, "summarize": 6}


def test_a_failing_search_fails_every_ticket_at_retrieve_and_none_gets_a_result(
    tmp_path: Path, fake: FakeProvider
) -> None:
    outcome = run_triage(tmp_path, fake, UnreachableStore(), 6)
    assert outcome.results == []
    assert sorted(i.offset for i, _ in outcome.failures) == list(range(6))
    assert {(f.step, f.retryable) for _, f in outcome.failures} == {("retrieve", True)}
    # the price of asking for the summary beside the search: it was paid for, once per ticket
    assert steps_traced(outcome)["summarize"] == 6
