"""Document workflow: fetch → extract text → chunk → classify → extract → embed (→ vector store) →
summarize → emit document.enriched.v1.

Fetch and text extraction are not model calls, so they fail into the outcome directly: a missing
file or an unparseable PDF is a property of the event (not retryable), a timeout is not.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from agents import steps
from agents.chunking import chunk_text
from agents.deps import WorkflowDeps
from agents.fetch import FetchError, fetch
from agents.outcome import BatchOutcome, OutboundEvent, WorkItem
from agents.textract import ExtractionError, extract_text, sniff_content_type
from gateway.models import CallContext, Entity, ModelRequest, Task
from sinks.vectors import VectorPoint, point_id
from streams.inflight import Turn
from streams.topics import DOCUMENT_ENRICHED

WORKFLOW = "document"
REVISION = "document-1"
MAX_ENTITIES = 100


def workflow_version(deps: WorkflowDeps) -> str:
    return steps.workflow_version(REVISION, deps, Task.CLASSIFY_TOPIC)


async def enrich(items: list[WorkItem], deps: WorkflowDeps, turn: Turn) -> BatchOutcome:
    """Documents write their own chunks only (no search of what earlier batches wrote), so no stage
    needs ``turn``'s ordering."""
    outcome = BatchOutcome()
    version = workflow_version(deps)
    live = await _load_texts(items, deps, outcome)
    common = {"workflow": WORKFLOW, "version": version}

    def chunks_request(task: Task) -> Any:
        def build(item: WorkItem, ctx: CallContext) -> ModelRequest:
            return ModelRequest(
                task, ctx, item.outputs["text"], parts=tuple(c.text for c in item.outputs["chunks"])
            )

        return build

    def text_request(task: Task, **options: Any) -> Any:
        def build(item: WorkItem, ctx: CallContext) -> ModelRequest:
            return ModelRequest(task, ctx, item.outputs["text"], options=options)

        return build

    live = await steps.model_step(
        deps.gateway,
        live,
        outcome,
        step="classify",
        task=Task.CLASSIFY_TOPIC,
        build=chunks_request(Task.CLASSIFY_TOPIC),
        store=lambda it, out: it.outputs.__setitem__("labels", out),
        **common,
    )
    live = await steps.model_step(
        deps.gateway,
        live,
        outcome,
        step="extract",
        task=Task.EXTRACT,
        build=text_request(Task.EXTRACT),
        store=lambda it, out: it.outputs.__setitem__("entities", out),
        **common,
    )
    live = await steps.model_step(
        deps.gateway,
        live,
        outcome,
        step="embed",
        task=Task.EMBED,
        build=chunks_request(Task.EMBED),
        store=lambda it, out: it.outputs.__setitem__("vectors", out),
        **common,
    )
    live = _store_vectors(live, deps, outcome)
    live = await steps.model_step(
        deps.gateway,
        live,
        outcome,
        step="summarize",
        task=Task.SUMMARIZE,
        build=text_request(Task.SUMMARIZE, max_sentences=3),
        store=lambda it, out: it.outputs.__setitem__("summary", out),
        **common,
    )
    outcome.results.extend(_result_event(item, version) for item in live)
    return outcome


async def _load_texts(items: list[WorkItem], deps: WorkflowDeps, outcome: BatchOutcome) -> list[WorkItem]:
    loaded = await asyncio.gather(*(_load_one(item, deps) for item in items), return_exceptions=True)
    alive = []
    for item, result in zip(items, loaded, strict=True):
        if isinstance(result, FetchError):
            steps.fail(outcome, item, "fetch", result, retryable=result.retryable)
        elif isinstance(result, ExtractionError):
            steps.fail(outcome, item, "extract_text", result, retryable=False)
        elif isinstance(result, BaseException):
            steps.fail(outcome, item, "fetch", result, retryable=False)
        else:
            alive.append(item)
    return alive


async def _load_one(item: WorkItem, deps: WorkflowDeps) -> None:
    data = item.envelope.data
    fetched = await fetch(
        str(data["uri"]),
        max_bytes=deps.settings.fetch_max_bytes,
        timeout_s=deps.settings.fetch_timeout_s,
        client=deps.http,
    )
    content_type = sniff_content_type(
        fetched.uri, data.get("content_type") or fetched.content_type, fetched.data
    )
    text = await asyncio.to_thread(extract_text, fetched.data, content_type)
    item.outputs["content_type"] = content_type
    item.outputs["text"] = text
    item.outputs["chunks"] = chunk_text(
        text, max_words=deps.settings.chunk_words, overlap_words=deps.settings.chunk_overlap_words
    )


def _store_vectors(items: list[WorkItem], deps: WorkflowDeps, outcome: BatchOutcome) -> list[WorkItem]:
    """Point ids derive from tenant, document and chunk index: a redelivery overwrites, never duplicates."""
    alive = []
    for item in items:
        tenant, doc_id = item.envelope.tenant_id, str(item.envelope.data["document_id"])
        points = [
            VectorPoint(
                id=point_id(tenant, "document", doc_id, str(chunk.index)),
                vector=vector.tolist(),
                payload={
                    "tenant_id": tenant,
                    "kind": "document_chunk",
                    "source_id": doc_id,
                    "chunk_index": chunk.index,
                    "text": chunk.text,
                },
            )
            for chunk, vector in zip(item.outputs["chunks"], item.outputs["vectors"], strict=True)
        ]
        try:
            deps.vectors.upsert(points)
        except Exception as exc:
            steps.fail(outcome, item, "embed", exc, retryable=True)
            continue
        item.outputs["point_ids"] = [p.id for p in points]
        alive.append(item)
    return alive


def _distinct_entities(entities: list[Entity]) -> list[dict[str, Any]]:
    seen: set[tuple[str, str]] = set()
    records = []
    for e in entities:
        key = (e.label, e.text.lower())
        if key in seen:
            continue
        seen.add(key)
        records.append({"label": e.label, "text": e.text, "start": e.start, "end": e.end})
        if len(records) >= MAX_ENTITIES:
            break
    return records


def _result_event(item: WorkItem, version: str) -> OutboundEvent:
    data = item.envelope.data
    record = {
        "tenant_id": item.envelope.tenant_id,
        "document_id": str(data["document_id"]),
        "causation_id": item.envelope.id,
        "workflow_version": version,
        "models": item.models,
        "title": data.get("title"),
        "content_type": item.outputs["content_type"],
        "text_chars": len(item.outputs["text"]),
        "chunk_count": len(item.outputs["chunks"]),
        "labels": [{"name": n, "score": s} for n, s in item.outputs["labels"]],
        "entities": _distinct_entities(item.outputs["entities"]),
        "summary": item.outputs["summary"],
        "vector_point_ids": item.outputs["point_ids"],
        "processed_at": datetime.now(UTC),
    }
    return steps.result_event(
        item,
        workflow=WORKFLOW,
        topic=DOCUMENT_ENRICHED,
        key=str(data["document_id"]),
        record=record,
        version=version,
    )
