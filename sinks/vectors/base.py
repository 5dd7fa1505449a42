"""The vector-store port: the one interface workflows use to store and find embeddings.

Riverbed runs against an embedded engine on a laptop and a Qdrant server in production. Workflows
must not care which, so they talk to this port and the two adapters (``edge`` and ``server``) are
held to the same contract by one shared test module.

Two rules live here rather than in each adapter because they protect data, not engines:

* point ids are deterministic (``point_id``), so a redelivered Kafka message upserts onto the
  point it wrote the first time instead of adding a duplicate;
* every search is scoped to one tenant, so no caller can forget the tenant filter.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Fixed namespace so ids stay stable across processes, machines and releases. Changing it would
# orphan every stored point, so it is a constant, not configuration.
_POINT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://riverbed.invalid/vectors/point")

# ASCII unit separator: cannot appear in ids we join, so ("a:b", "c") and ("a", "b:c") differ.
_PART_SEPARATOR = "\x1f"

REQUIRED_PAYLOAD_KEYS: tuple[str, ...] = ("tenant_id", "kind", "source_id")
"""Payload keys every point carries; the stores filter on them. The server adapter indexes all
three; the edge adapter indexes tenant_id and kind and excludes a source itself (see edge.py)."""


def point_id(*parts: str) -> str:
    """Return a deterministic UUID string for ``parts`` (e.g. tenant, source id, chunk index).

    The same parts always give the same id, so re-upserting a redelivered event overwrites the
    point instead of duplicating it.
    """
    if not parts:
        raise ValueError("point_id needs at least one part")
    return str(uuid.uuid5(_POINT_NAMESPACE, _PART_SEPARATOR.join(parts)))


def _check_payload(payload: Mapping[str, Any]) -> None:
    for key in REQUIRED_PAYLOAD_KEYS:
        value = payload.get(key)
        if not isinstance(value, str) or not value:
            raise ValueError(f"vector point payload needs a non-empty string {key!r}, got {value!r}")


@dataclass(frozen=True)
class VectorPoint:
    """One embedding to store.

    ``payload`` always has ``tenant_id``, ``kind`` and ``source_id`` (non-empty strings, checked
    here because a point without a tenant could never be found again and one with a wrong type
    would slip past the tenant filter); chunk points also carry ``chunk_index`` and ``text``.
    """

    id: str
    vector: Sequence[float]
    payload: dict[str, Any]

    def __post_init__(self) -> None:
        try:
            uuid.UUID(self.id)
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"vector point id must be a UUID string, got {self.id!r}") from exc
        _check_payload(self.payload)


@dataclass(frozen=True)
class VectorHit:
    """One search result: the point id, its cosine similarity to the query, and its payload."""

    id: str
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class SearchQuery:
    """One search of a batch; same meaning as the arguments of ``VectorStore.search``."""

    vector: Sequence[float]
    tenant_id: str
    limit: int
    kinds: Sequence[str] | None = None
    exclude_source_id: str | None = None


class VectorStore(ABC):
    """A cosine-similarity store of ``VectorPoint``s, partitioned by tenant."""

    @abstractmethod
    def ensure_collection(self, dimensions: int) -> None:
        """Create the collection if missing (cosine distance, payload indexes where supported).

        Idempotent. Raises ``ValueError`` if the collection exists with another dimension.
        """

    @abstractmethod
    def upsert(self, points: Sequence[VectorPoint]) -> None:
        """Insert or overwrite ``points`` (same id replaces vector and payload)."""

    @abstractmethod
    def search(
        self,
        vector: Sequence[float],
        *,
        tenant_id: str,
        limit: int,
        kinds: Sequence[str] | None = None,
        exclude_source_id: str | None = None,
    ) -> list[VectorHit]:
        """Return up to ``limit`` hits of ``tenant_id`` only, most similar first.

        ``kinds`` restricts to those payload kinds (an empty sequence matches nothing);
        ``exclude_source_id`` drops points of that source, e.g. the document being compared.
        """

    def search_many(self, queries: Sequence[SearchQuery]) -> list[list[VectorHit]]:
        """Results per query, in order. Adapters override this when their engine plans a batch
        better than one call per query (qdrant-edge scores a batch in one pass over its segments)."""
        return [
            self.search(
                q.vector,
                tenant_id=q.tenant_id,
                limit=q.limit,
                kinds=q.kinds,
                exclude_source_id=q.exclude_source_id,
            )
            for q in queries
        ]

    @abstractmethod
    def count(self, tenant_id: str | None = None) -> int:
        """Count points exactly, of one tenant or of all tenants."""

    @abstractmethod
    def close(self) -> None:
        """Make writes durable and release the engine. Idempotent; the store is unusable after."""


class BatchSearchingStore(VectorStore):
    """A store whose engine answers a batch of searches in one pass: ``search`` is a batch of one."""

    def search(
        self,
        vector: Sequence[float],
        *,
        tenant_id: str,
        limit: int,
        kinds: Sequence[str] | None = None,
        exclude_source_id: str | None = None,
    ) -> list[VectorHit]:
        return self.search_many([SearchQuery(vector, tenant_id, limit, kinds, exclude_source_id)])[0]

    @abstractmethod
    def search_many(self, queries: Sequence[SearchQuery]) -> list[list[VectorHit]]:
        """Results per query, in order."""


def check_search_args(tenant_id: str, limit: int) -> None:
    """Reject arguments that would make a search unscoped or meaningless, identically in every adapter."""
    if not tenant_id:
        raise ValueError("search needs a non-empty tenant_id")
    if limit < 1:
        raise ValueError(f"search limit must be >= 1, got {limit}")


def check_dimensions(vector: Sequence[float], expected: int | None) -> None:
    """Reject a vector of the wrong size before the engine does, with the same error everywhere.

    ``expected`` is None when the store was opened without ``ensure_collection``; the engine then
    still rejects the vector, only with its own exception type.
    """
    if expected is not None and len(vector) != expected:
        raise ValueError(f"vector has {len(vector)} dimensions, the collection expects {expected}")
