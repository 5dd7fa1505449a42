"""Vector store on a Qdrant server, for deployments where several workers share one index.

Same contract as the embedded ``EdgeVectorStore``; only the transport differs. Writes wait for
the server to apply them (``wait=True``) so a search right after an upsert sees it, which is what
the embedded engine does too and what the workflows assume.

``in_memory`` runs qdrant-client's in-process local mode. It exists for tests (there is no server
binary on developer machines); local mode ignores payload indexes, so they are skipped there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import UnexpectedResponse

from sinks.vectors.base import (
    REQUIRED_PAYLOAD_KEYS,
    VectorHit,
    VectorPoint,
    VectorStore,
    check_dimensions,
    check_search_args,
)

_CONFLICT = 409


def _match(key: str, value: str) -> qm.FieldCondition:
    return qm.FieldCondition(key=key, match=qm.MatchValue(value=value))


def _as_vector(vector: Sequence[float]) -> list[float]:
    return [float(x) for x in vector]


class ServerVectorStore(VectorStore):
    """``VectorStore`` over one collection of a Qdrant server reached through qdrant-client."""

    def __init__(self, url: str, collection: str, api_key: str | None = None) -> None:
        self._setup(QdrantClient(url=url, api_key=api_key), collection, payload_indexes=True)

    @classmethod
    def in_memory(cls, collection: str) -> ServerVectorStore:
        """Store backed by qdrant-client's in-process ``:memory:`` mode (tests only)."""
        store = cls.__new__(cls)
        store._setup(QdrantClient(location=":memory:"), collection, payload_indexes=False)
        return store

    def _setup(self, client: QdrantClient, collection: str, *, payload_indexes: bool) -> None:
        if not collection:
            raise ValueError("collection name must not be empty")
        self._client = client
        self._collection = collection
        self._payload_indexes = payload_indexes
        self._dimensions: int | None = None
        self._closed = False

    def ensure_collection(self, dimensions: int) -> None:
        if dimensions < 1:
            raise ValueError(f"dimensions must be >= 1, got {dimensions}")
        self._check_open()
        if self._client.collection_exists(self._collection):
            self._check_existing(dimensions)
        else:
            self._create(dimensions)
        if self._payload_indexes:
            for key in REQUIRED_PAYLOAD_KEYS:
                # Idempotent on the server; tenant_id is the partition key, so mark it is_tenant.
                schema = qm.KeywordIndexParams(type=qm.KeywordIndexType.KEYWORD, is_tenant=key == "tenant_id")
                self._client.create_payload_index(self._collection, key, field_schema=schema, wait=True)
        self._dimensions = dimensions

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        if not points:
            return
        self._check_open()
        for p in points:
            check_dimensions(p.vector, self._dimensions)
        structs = [
            qm.PointStruct(id=p.id, vector=_as_vector(p.vector), payload=dict(p.payload)) for p in points
        ]
        self._client.upsert(self._collection, points=structs, wait=True)

    def search(
        self,
        vector: Sequence[float],
        *,
        tenant_id: str,
        limit: int,
        kinds: Sequence[str] | None = None,
        exclude_source_id: str | None = None,
    ) -> list[VectorHit]:
        check_search_args(tenant_id, limit)
        self._check_open()
        check_dimensions(vector, self._dimensions)
        if kinds is not None and not kinds:
            return []
        must: list[qm.Condition] = [_match("tenant_id", tenant_id)]
        if kinds is not None:
            must.append(qm.FieldCondition(key="kind", match=qm.MatchAny(any=list(kinds))))
        must_not: list[qm.Condition] | None = (
            [_match("source_id", exclude_source_id)] if exclude_source_id is not None else None
        )
        response = self._client.query_points(
            self._collection,
            query=_as_vector(vector),
            query_filter=qm.Filter(must=must, must_not=must_not),
            limit=limit,
            with_payload=True,
            with_vectors=False,
        )
        return [
            VectorHit(id=str(hit.id), score=float(hit.score), payload=dict(hit.payload or {}))
            for hit in response.points
        ]

    def count(self, tenant_id: str | None = None) -> int:
        self._check_open()
        count_filter = qm.Filter(must=[_match("tenant_id", tenant_id)]) if tenant_id is not None else None
        return int(self._client.count(self._collection, count_filter=count_filter, exact=True).count)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._client.close()

    def __repr__(self) -> str:
        return f"ServerVectorStore(collection={self._collection!r})"

    # -- internals -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")

    def _create(self, dimensions: int) -> None:
        try:
            self._client.create_collection(
                self._collection,
                vectors_config=qm.VectorParams(size=dimensions, distance=qm.Distance.COSINE),
            )
        except UnexpectedResponse as exc:
            # Another worker created it between our check and our create: verify it instead.
            if exc.status_code != _CONFLICT:
                raise
            self._check_existing(dimensions)

    def _check_existing(self, dimensions: int) -> None:
        vectors: Any = self._client.get_collection(self._collection).config.params.vectors
        if not isinstance(vectors, qm.VectorParams):
            raise ValueError(f"collection {self._collection!r} has named vectors, expected one unnamed")
        if vectors.size != dimensions or vectors.distance != qm.Distance.COSINE:
            raise ValueError(
                f"collection {self._collection!r} has size {vectors.size} / {vectors.distance.value}, "
                f"expected {dimensions} / Cosine"
            )
