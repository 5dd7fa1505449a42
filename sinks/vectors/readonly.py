"""A vector store a shadow run may search but never change.

A shadow worker replays production traffic through a candidate version; its tickets and chunks must
not land in production's store (later production tickets would find them as "similar"). Writes are
dropped and counted, so the run can report how many it withheld.
"""

from __future__ import annotations

from collections.abc import Sequence

from sinks.vectors.base import SearchQuery, VectorHit, VectorPoint, VectorStore


class ReadOnlyVectorStore(VectorStore):
    def __init__(self, inner: VectorStore) -> None:
        self.inner = inner
        self.withheld = 0

    def ensure_collection(self, dimensions: int) -> None:
        self.inner.ensure_collection(dimensions)

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        self.withheld += len(points)

    def search(
        self,
        vector: Sequence[float],
        *,
        tenant_id: str,
        limit: int,
        kinds: Sequence[str] | None = None,
        exclude_source_id: str | None = None,
    ) -> list[VectorHit]:
        return self.inner.search(
            vector, tenant_id=tenant_id, limit=limit, kinds=kinds, exclude_source_id=exclude_source_id
        )

    def search_many(self, queries: Sequence[SearchQuery]) -> list[list[VectorHit]]:
        return self.inner.search_many(queries)

    def count(self, tenant_id: str | None = None) -> int:
        return self.inner.count(tenant_id)

    def close(self) -> None:
        self.inner.close()
