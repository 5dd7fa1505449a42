"""Vector store: one port, an embedded adapter and a server adapter.

``open_vector_store`` picks the adapter from configuration alone (an empty ``qdrant_url`` means
the embedded qdrant-edge shard), so workflows never import an adapter directly and the same code
runs on a laptop and against a Qdrant server.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sinks.vectors.base import SearchQuery, VectorHit, VectorPoint, VectorStore, point_id
from sinks.vectors.edge import DEFAULT_FLUSH_INTERVAL_S, EdgeVectorStore
from sinks.vectors.isolated import IsolatedVectorStore, VectorStoreProcessError

if TYPE_CHECKING:
    from sinks.vectors.server import ServerVectorStore

__all__ = [
    "EdgeVectorStore",
    "IsolatedVectorStore",
    "SearchQuery",
    "ServerVectorStore",
    "VectorHit",
    "VectorPoint",
    "VectorStore",
    "VectorStoreProcessError",
    "open_vector_store",
    "point_id",
]


def __getattr__(name: str) -> Any:
    # qdrant-client (and its gRPC stack) adds ~60 MiB to a process; an embedded-only worker and the
    # shard's own child process never need it, so it is imported on first use.
    if name == "ServerVectorStore":
        from sinks.vectors.server import ServerVectorStore

        return ServerVectorStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_vector_store(
    *,
    qdrant_url: str,
    path: Path,
    collection: str,
    api_key: str | None = None,
    flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
    isolated: bool = False,
) -> VectorStore:
    """Return the server adapter when ``qdrant_url`` is set, else the embedded shard under ``path``
    (which flushes its segments every ``flush_interval_s`` while it is written to). ``isolated``
    runs the embedded shard in a child process, so its scans do not hold this process's GIL."""
    if qdrant_url.strip():
        from sinks.vectors.server import ServerVectorStore

        return ServerVectorStore(qdrant_url.strip(), collection, api_key=api_key)
    if isolated:
        return IsolatedVectorStore(path, collection, flush_interval_s=flush_interval_s)
    return EdgeVectorStore(path, collection, flush_interval_s=flush_interval_s)
