"""Ticket workflow: classify intent ∥ extract entities → embed → retrieve similar items ∥
summarize → emit ticket.triaged.v1.

Steps run in a fixed order over the whole micro-batch (side by side where neither reads the
other's output), so each model sees a batch (several times faster per item on the local tier)
while each event keeps its own trace per step.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import numpy as np

from agents import steps
from agents.deps import WorkflowDeps
from agents.outcome import BatchOutcome, OutboundEvent, WorkItem
from agents.priority import priority_for
from agents.review import review_headers, review_reasons
from gateway.models import CallContext, Entity, ModelRequest, Task
from sinks.vectors import SearchQuery, VectorPoint, point_id
from streams import envelope as env
from streams.inflight import Turn
from streams.topics import TICKET_REVIEW, TICKET_TRIAGED

WORKFLOW = "ticket"
REVISION = "ticket-1"
SIMILAR_LIMIT = 3


def workflow_version(deps: WorkflowDeps) -> str:
    return steps.workflow_version(REVISION, deps, Task.CLASSIFY_INTENT)


def ticket_text(item: WorkItem) -> str:
    data = item.envelope.data
    subject = (data.get("subject") or "").strip()
    body = str(data.get("body") or "").strip()
    return f"{subject}. {body}" if subject else body


async def triage(items: list[WorkItem], deps: WorkflowDeps, turn: Turn) -> BatchOutcome:
    outcome = BatchOutcome()
    version = workflow_version(deps)

    def request(task: Task, **options: Any) -> Any:
        def build(item: WorkItem, ctx: CallContext) -> ModelRequest:
            return ModelRequest(task, ctx, ticket_text(item), options=options)

        return build

    common = {"workflow": WORKFLOW, "version": version}
    # classify and extract read only the ticket text, so they run side by side (ONNX and spaCy
    # each keep one core busy); an event continues only if both succeeded.
    classified, extracted = await asyncio.gather(
        steps.model_step(
            deps.gateway,
            items,
            outcome,
            step="classify",
            task=Task.CLASSIFY_INTENT,
            build=request(Task.CLASSIFY_INTENT),
            store=lambda it, out: it.outputs.__setitem__("intent", out),
            **common,
        ),
        steps.model_step(
            deps.gateway,
            items,
            outcome,
            step="extract",
            task=Task.EXTRACT,
            build=request(Task.EXTRACT),
            store=lambda it, out: it.outputs.__setitem__("entities", out),
            **common,
        ),
    )
    both = {id(item) for item in extracted}
    live = [item for item in classified if id(item) in both]
    live = await steps.model_step(
        deps.gateway,
        live,
        outcome,
        step="retrieve",
        task=Task.EMBED,
        build=request(Task.EMBED),
        store=lambda it, out: it.outputs.__setitem__("vector", out[0]),
        **common,
    )

    async def retrieve(items: list[WorkItem]) -> list[WorkItem]:
        # Search-then-insert must see batches in the order they were taken, or a ticket's neighbours
        # would depend on which of two batches in flight got to the store first.
        async with turn.stage("retrieve"):
            return await asyncio.to_thread(_retrieve_similar, items, deps, outcome)

    # The summary reads only the ticket text, so it is asked for while the store is searched: the
    # search (and its wait for the batch before) is then off the batch's path instead of on it.
    retrieved, summarized = await asyncio.gather(
        retrieve(live),
        steps.model_step(
            deps.gateway,
            live,
            outcome,
            step="summarize",
            task=Task.SUMMARIZE,
            build=request(Task.SUMMARIZE, max_sentences=1),
            store=lambda it, out: it.outputs.__setitem__("summary", out),
            **common,
        ),
    )
    found = {id(item) for item in retrieved}
    live = [item for item in summarized if id(item) in found]
    review_policy = deps.gateway.policy.task(Task.CLASSIFY_INTENT)
    for item in live:
        reasons = review_reasons(item.outputs["intent"], review_policy)
        result = _result_event(item, version, reasons)
        outcome.results.append(result)
        if reasons:
            outcome.reviews.append(_review_event(item, result, version, reasons))
    outcome.failures = steps.first_failure_per_event(outcome.failures)
    return outcome


def _retrieve_similar(items: list[WorkItem], deps: WorkflowDeps, outcome: BatchOutcome) -> list[WorkItem]:
    """One batched search for the whole batch, then one upsert of its tickets. Searching first
    means a ticket never finds itself; ``exclude_source_id`` also keeps a redelivered ticket from
    finding its own earlier copy."""
    queries = [
        SearchQuery(
            item.outputs["vector"],
            item.envelope.tenant_id,
            SIMILAR_LIMIT,
            exclude_source_id=str(item.envelope.data["ticket_id"]),
        )
        for item in items
    ]
    points = [
        VectorPoint(
            id=point_id(item.envelope.tenant_id, "ticket", str(item.envelope.data["ticket_id"])),
            vector=item.outputs["vector"],
            payload={
                "tenant_id": item.envelope.tenant_id,
                "kind": "ticket",
                "source_id": str(item.envelope.data["ticket_id"]),
                "text": ticket_text(item)[:1000],
            },
        )
        for item in items
    ]
    try:
        results = deps.vectors.search_many(queries)
        deps.vectors.upsert(points)
    except Exception as exc:  # the store is shared by the batch: every item failed this step
        for item in items:
            steps.fail(outcome, item, "retrieve", exc, retryable=True)
        return []
    earlier = _earlier_in_batch(items, points)
    for item, hits, extra in zip(items, results, earlier, strict=True):
        found = [
            {
                "point_id": h.id,
                "kind": str(h.payload.get("kind", "")),
                "source_id": str(h.payload.get("source_id", "")),
                "score": float(h.score),
            }
            for h in hits
        ]
        best: dict[str, dict[str, Any]] = {}
        for hit in sorted(found + extra, key=lambda hit: -hit["score"]):
            best.setdefault(hit["point_id"], hit)
        item.outputs["similar"] = list(best.values())[:SIMILAR_LIMIT]
    return items


def _earlier_in_batch(items: list[WorkItem], points: list[VectorPoint]) -> list[list[dict[str, Any]]]:
    """What one-at-a-time processing would also have found: earlier tickets of the same batch and
    tenant (a burst of the same complaint arrives together). One matrix product for the batch."""
    vectors = np.asarray([item.outputs["vector"] for item in items], dtype=np.float32)
    scores = vectors @ vectors.T
    extras: list[list[dict[str, Any]]] = []
    for k, item in enumerate(items):
        ticket_id = str(item.envelope.data["ticket_id"])
        candidates = [
            j
            for j in range(k)
            if items[j].envelope.tenant_id == item.envelope.tenant_id
            and str(items[j].envelope.data["ticket_id"]) != ticket_id
        ]
        best = sorted(candidates, key=lambda j: -scores[k, j])[:SIMILAR_LIMIT]
        extras.append(
            [
                {
                    "point_id": points[j].id,
                    "kind": "ticket",
                    "source_id": str(points[j].payload["source_id"]),
                    "score": float(scores[k, j]),
                }
                for j in best
            ]
        )
    return extras


def _entity_records(entities: list[Entity]) -> list[dict[str, Any]]:
    return [{"label": e.label, "text": e.text, "start": e.start, "end": e.end} for e in entities]


def _review_event(item: WorkItem, result: OutboundEvent, version: str, reasons: list[str]) -> OutboundEvent:
    """The same record on the review topic, under an id of its own (deterministic like the result's)."""
    review_id = env.result_event_id(item.envelope.id, f"{version}+review")
    headers = env.build_headers(
        event_id=review_id,
        topic=TICKET_REVIEW,
        tenant_id=item.envelope.tenant_id,
        source=f"urn:riverbed:agents:{WORKFLOW}",
        causation_id=item.envelope.id,
        extra=review_headers(reasons),
    )
    return OutboundEvent(TICKET_REVIEW, result.key, result.value, headers, review_id)


def _result_event(item: WorkItem, version: str, reasons: list[str]) -> OutboundEvent:
    data = item.envelope.data
    prediction = item.outputs["intent"]
    record = {
        "tenant_id": item.envelope.tenant_id,
        "ticket_id": str(data["ticket_id"]),
        "causation_id": item.envelope.id,
        "workflow_version": version,
        "models": item.models,
        "intent": prediction.label,
        "intent_confidence": float(prediction.confidence),
        "priority": priority_for(prediction.label, ticket_text(item)),
        "entities": _entity_records(item.outputs["entities"]),
        "similar": item.outputs["similar"],
        "summary": item.outputs["summary"],
        "processed_at": datetime.now(UTC),
    }
    return steps.result_event(
        item,
        workflow=WORKFLOW,
        topic=TICKET_TRIAGED,
        key=str(data["ticket_id"]),
        record=record,
        version=version,
        extra_headers=review_headers(reasons),
    )
