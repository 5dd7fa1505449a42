"""Publishing events the way an upstream system would: Avro value, CloudEvents headers, entity key.

Sources are JSONL or CSV files (tickets or documents) and directories (one document.uploaded per
file, referenced by file:// URI: the pipeline fetches content itself, events never inline it).
"""

from __future__ import annotations

import csv
import json
import mimetypes
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from streams import envelope as env
from streams.topics import DOCUMENT_UPLOADED, TICKET_CREATED

DOCUMENT_SUFFIXES = {".txt", ".text", ".md", ".markdown", ".html", ".htm", ".pdf"}


@dataclass(frozen=True)
class Draft:
    """An event about to be published; ``label`` is the expected answer when the source has one."""

    topic: str
    key: str
    data: dict[str, Any]
    label: str | None = None


@dataclass(frozen=True)
class Published:
    event_id: str
    topic: str
    key: str
    label: str | None


def ticket_drafts(
    rows: Iterable[dict[str, Any]],
    *,
    tenant: str,
    text_column: str = "text",
    label_column: str | None = "category",
    id_prefix: str = "T",
) -> Iterator[Draft]:
    now = datetime.now(UTC)
    for n, row in enumerate(rows):
        body = str(row.get(text_column) or row.get("body") or "")
        ticket_id = str(row.get("ticket_id") or row.get("id") or f"{id_prefix}{n:06d}")
        label = str(row[label_column]) if label_column and row.get(label_column) else None
        data = {
            "tenant_id": str(row.get("tenant_id") or tenant),
            "ticket_id": ticket_id,
            "subject": row.get("subject") or None,
            "body": body,
            "channel": str(row.get("channel") or "email"),
            "customer_id": row.get("customer_id") or None,
            "sensitivity": str(row.get("sensitivity") or "internal"),
            "created_at": now,
            "metadata": {"label": label} if label else {},
        }
        yield Draft(TICKET_CREATED, ticket_id, data, label)


def document_drafts_from_dir(directory: Path, *, tenant: str) -> Iterator[Draft]:
    now = datetime.now(UTC)
    for path in sorted(
        p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in DOCUMENT_SUFFIXES
    ):
        rel = path.relative_to(directory).as_posix()
        yield Draft(
            DOCUMENT_UPLOADED,
            rel,
            {
                "tenant_id": tenant,
                "document_id": rel,
                "uri": path.resolve().as_uri(),
                "content_type": mimetypes.guess_type(path.name)[0],
                "title": path.stem.replace("_", " "),
                "sensitivity": "internal",
                "uploaded_at": now,
                "metadata": {},
            },
        )


def document_drafts(rows: Iterable[dict[str, Any]], *, tenant: str) -> Iterator[Draft]:
    now = datetime.now(UTC)
    for n, row in enumerate(rows):
        doc_id = str(row.get("document_id") or row.get("id") or f"D{n:06d}")
        yield Draft(
            DOCUMENT_UPLOADED,
            doc_id,
            {
                "tenant_id": str(row.get("tenant_id") or tenant),
                "document_id": doc_id,
                "uri": str(row["uri"]),
                "content_type": row.get("content_type") or None,
                "title": row.get("title") or None,
                "sensitivity": str(row.get("sensitivity") or "internal"),
                "uploaded_at": now,
                "metadata": {},
            },
        )


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            yield from csv.DictReader(fh)
    else:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)


async def publish(
    bootstrap: str, drafts: Iterable[Draft], *, source: str = env.DEFAULT_SOURCE
) -> list[Published]:
    """Publish with acks=all and wait for every acknowledgement; returns what was published."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=16 * 1024 * 1024
    )
    await producer.start()
    published: list[Published] = []
    try:
        pending = []
        for draft in drafts:
            value, headers, event_id = env.encode_event(draft.topic, draft.data, source=source)
            pending.append(
                await producer.send(draft.topic, value=value, key=draft.key.encode(), headers=headers)
            )
            published.append(Published(event_id, draft.topic, draft.key, draft.label))
        for fut in pending:
            await fut
    finally:
        await producer.stop()
    return published
