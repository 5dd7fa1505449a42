"""Vector store: one port, an embedded adapter and a server adapter.

``open_vector_store`` picks the adapter from configuration alone (an empty ``qdrant_url`` means
the embedded qdrant-edge shard), so workflows never import an adapter directly and the same code
runs on a laptop and against a Qdrant server.
"""

from __future__ import annotations

from pathlib import Path

from sinks.vectors.base import SearchQuery, VectorHit, VectorPoint, VectorStore, point_id
from sinks.vectors.edge import DEFAULT_FLUSH_INTERVAL_S, EdgeVectorStore
from sinks.vectors.server import ServerVectorStore

__all__ = [
    "EdgeVectorStore",
    "SearchQuery",
    "ServerVectorStore",
    "VectorHit",
    "VectorPoint",
    "VectorStore",
    "open_vector_store",
    "point_id",
]


def open_vector_store(
    *,
    qdrant_url: str,
    path: Path,
    collection: str,
    api_key: str | None = None,
    flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
) -> VectorStore:
    """Return the server adapter when ``qdrant_url`` is set, else the embedded shard under ``path``
    (which flushes its segments every ``flush_interval_s`` while it is written to)."""
    if qdrant_url.strip():
        return ServerVectorStore(qdrant_url.strip(), collection, api_key=api_key)
    return EdgeVectorStore(path, collection, flush_interval_s=flush_interval_s)
