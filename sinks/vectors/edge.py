"""Vector store on qdrant-edge: Qdrant's engine in-process, so the embedded stack needs no server.

The shard lives in ``path / collection`` and survives restarts: updates go through the shard's
write-ahead log (on by default), ``upsert`` flushes segments every ``flush_interval_s``, and
``close`` flushes before releasing the shard.

Facts about qdrant_edge 0.9 this adapter relies on:

* ``EdgeShard.create(dir, EdgeConfig)`` refuses a directory that already holds segments;
  ``EdgeShard.load(dir, config)`` opens one and, given a config, fails on an incompatible vector
  size. So we load when ``edge_config.json`` exists and create otherwise.
* A shard directory is locked by the process that opened it (a second ``load`` fails with
  ``WouldBlock`` on the WAL), hence "one process owns a path".
* There is no background optimizer. New points sit in a plain (brute-force) segment until
  ``optimize()`` builds HNSW, which blocks (about 40 s for 50k x 384 on 2 cores) and is a no-op
  below the indexing threshold (5k x 384 points stay plain). Brute force over tens of thousands
  of points is about a millisecond, so ``upsert`` never optimizes; ``optimize`` is exposed for
  idle-time maintenance instead.
* Nothing flushes by itself either. Unflushed, the WAL keeps every 32 MiB file since the shard
  was created (three closed files after 59k ticket points, all replayed on the next load) and the
  shard holds ~20 MiB of pending changes on the heap per 40k points. A flush takes ~18 ms
  (median, 33 ms max, every 2,560 points of 59k) and lets the WAL drop what it covers.
* Returned point ids are ``uuid.UUID``; they are turned back into strings here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from sinks.vectors.base import (
    BatchSearchingStore,
    SearchQuery,
    VectorHit,
    VectorPoint,
    check_dimensions,
    check_search_args,
)

_CONFIG_FILE = "edge_config.json"
DEFAULT_FLUSH_INTERVAL_S = 5.0
EXCLUDE_HEADROOM = 1  # a ticket is one point, so one extra hit covers excluding it
# source_id is filtered here, not in the engine, so it needs no index (see ``search_many``)
INDEXED_PAYLOAD_KEYS = ("tenant_id", "kind")


def _match(key: str, value: str) -> Any:
    return qe.FieldCondition(key=key, match=qe.MatchValue(value))


def _hit(hit: Any) -> VectorHit:
    return VectorHit(id=str(hit.id), score=float(hit.score), payload=dict(hit.payload or {}))


def _as_vector(vector: Sequence[float]) -> Any:
    # The engine takes float32 NumPy arrays directly, which skips a Python list of floats.
    return np.asarray(vector, dtype=np.float32)


class EdgeVectorStore(BatchSearchingStore):
    """``VectorStore`` over one qdrant-edge shard at ``path / collection``.

    The shard is opened lazily (by ``ensure_collection`` or the first read/write), so building the
    store is free and does not take the directory lock until it is used.
    """

    def __init__(
        self, path: Path, collection: str, *, flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S
    ) -> None:
        if not collection or "/" in collection or collection in {".", ".."}:
            raise ValueError(f"invalid collection name {collection!r}")
        self._dir = Path(path) / collection
        self._collection = collection
        self._shard: Any = None
        self._dimensions: int | None = None
        self._closed = False
        self._flush_interval_s = flush_interval_s
        self._last_flush = time.monotonic()

    @property
    def directory(self) -> Path:
        """Directory holding the shard."""
        return self._dir

    def ensure_collection(self, dimensions: int) -> None:
        if dimensions < 1:
            raise ValueError(f"dimensions must be >= 1, got {dimensions}")
        self._check_open()
        if self._shard is not None and self._dimensions == dimensions:
            return
        if self._shard is not None:
            # Opened lazily without a config: reopen with one so the engine checks the vector size.
            self._shard.close()
            self._shard = None
        config = _config(dimensions, qe.VectorStorageDatatype.Float16)
        if self._exists():
            try:
                self._shard = self._load(config)
            except ValueError as exc:
                if "datatype" not in str(exc):
                    raise
                # A store created before vectors were kept as float16: open it as it was written.
                self._shard = self._load(_config(dimensions, qe.VectorStorageDatatype.Float32))
        else:
            self._dir.mkdir(parents=True, exist_ok=True)
            self._shard = qe.EdgeShard.create(str(self._dir), config)
        self._dimensions = dimensions
        self._ensure_payload_indexes()

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        if not points:
            return
        shard = self._require()
        for p in points:
            check_dimensions(p.vector, self._dimensions)
        batch = [qe.Point(p.id, _as_vector(p.vector), dict(p.payload)) for p in points]
        shard.update(qe.UpdateOperation.upsert_points(batch))
        # In the writer's thread rather than on a timer of the adapter's own: no extra thread
        # touches the shard, and a store nobody writes to has nothing to flush.
        if time.monotonic() - self._last_flush >= self._flush_interval_s:
            self.flush()

    def search_many(self, queries: Sequence[SearchQuery]) -> list[list[VectorHit]]:
        """One ``query_batch`` call: the engine shares a pass over its segments across the batch.

        ``exclude_source_id`` is applied here, not as the engine's ``must_not``: ask for one more
        hit than wanted and drop the excluded source's points. A ``must_not`` on ``source_id``
        made qdrant-edge check every candidate's payload, ~7x slower for a batch of 256 over 50k
        points, and its keyword index held ~18 MB per 40k points (bench figures in
        docs/architecture.md). Only when the excluded source fills the headroom (a source with many
        points) does that query run again with the engine's filter, so the answer is always exact.
        """
        shard = self._require()
        results: list[list[VectorHit]] = [[] for _ in queries]
        planned: list[tuple[int, SearchQuery]] = []
        for i, q in enumerate(queries):
            check_search_args(q.tenant_id, q.limit)
            check_dimensions(q.vector, self._dimensions)
            if q.kinds is not None and not q.kinds:
                continue
            planned.append((i, q))
        if not planned:
            return results
        answers = shard.query_batch(
            qe.QueryBatchRequest([self._request(q, q.limit + EXCLUDE_HEADROOM, False) for _, q in planned])
        )
        refiltered: list[tuple[int, SearchQuery]] = []
        for (i, q), hits in zip(planned, answers, strict=True):
            found = [_hit(hit) for hit in hits]
            kept = [
                h
                for h in found
                if q.exclude_source_id is None or h.payload.get("source_id") != q.exclude_source_id
            ]
            if len(kept) < q.limit and len(found) == q.limit + EXCLUDE_HEADROOM:
                refiltered.append((i, q))
            results[i] = kept[: q.limit]
        if refiltered:
            again = shard.query_batch(
                qe.QueryBatchRequest([self._request(q, q.limit, True) for _, q in refiltered])
            )
            for (i, _), hits in zip(refiltered, again, strict=True):
                results[i] = [_hit(hit) for hit in hits]
        return results

    @staticmethod
    def _request(q: SearchQuery, limit: int, exclude_in_engine: bool) -> Any:
        must: list[Any] = [_match("tenant_id", q.tenant_id)]
        if q.kinds is not None:
            must.append(qe.FieldCondition(key="kind", match=qe.MatchAny(list(q.kinds))))
        must_not = (
            [_match("source_id", q.exclude_source_id)]
            if exclude_in_engine and q.exclude_source_id is not None
            else None
        )
        return qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(_as_vector(q.vector)),
            filter=qe.Filter(must=must, must_not=must_not),
            with_payload=True,
            with_vector=False,
        )

    def count(self, tenant_id: str | None = None) -> int:
        shard = self._require()
        query_filter = qe.Filter(must=[_match("tenant_id", tenant_id)]) if tenant_id is not None else None
        return int(shard.count(qe.CountRequest(exact=True, filter=query_filter)))

    def optimize(self) -> bool:
        """Build HNSW for segments past the indexing threshold; blocks. True if anything changed."""
        return bool(self._require().optimize())

    def flush(self) -> None:
        """Write pending segment changes to disk (the WAL already makes them durable)."""
        if self._shard is not None:
            self._shard.flush()
            self._last_flush = time.monotonic()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        shard, self._shard = self._shard, None
        if shard is not None:
            try:
                shard.flush()
            finally:
                shard.close()

    def __repr__(self) -> str:
        return f"EdgeVectorStore(path={self._dir.parent!s}, collection={self._collection!r})"

    # -- internals -------------------------------------------------------------------------------

    def _exists(self) -> bool:
        return (self._dir / _CONFIG_FILE).is_file()

    def _load(self, config: Any) -> Any:
        try:
            return qe.EdgeShard.load(str(self._dir), config)
        except Exception as exc:  # the binding raises bare Exception with a message
            message = str(exc)
            if "Incompatible" in message or "incompatible" in message:
                raise ValueError(f"edge shard {self._dir} does not fit: {message}") from exc
            if "WouldBlock" in message:
                raise RuntimeError(f"edge shard {self._dir} is open in another process or store") from exc
            raise

    def _require(self) -> Any:
        self._check_open()
        if self._shard is None:
            if not self._exists():
                raise RuntimeError(f"no edge shard at {self._dir}; call ensure_collection() first")
            self._shard = self._load(None)
        return self._shard

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")

    def _ensure_payload_indexes(self) -> None:
        shard = self._shard
        existing = set(shard.info().payload_schema)
        for key in INDEXED_PAYLOAD_KEYS:
            if key in existing:
                continue
            # tenant_id is the partition key: is_tenant lets the engine co-locate a tenant's points.
            schema: Any = qe.PayloadSchemaType.Keyword
            if key == "tenant_id":
                schema = qe.KeywordIndexParams(is_tenant=True)
            shard.update(qe.UpdateOperation.create_field_index(key, schema))


def _config(dimensions: int, datatype: Any) -> Any:
    """Vectors are stored as float16: half the memory and disk of float32 (measured: the store's
    resident growth over 40k ticket points fell from ~153 MB to ~95 MB) for a cosine error of
    ~1e-4, far below what separates a similar ticket from an unrelated one."""
    return qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(size=dimensions, distance=qe.Distance.Cosine, datatype=datatype)
    )
