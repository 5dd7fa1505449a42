"""The embedded qdrant-edge shard in a process of its own, behind the same port.

qdrant-edge's calls hold the GIL for as long as they run. A similar-ticket search of a batch of
256 scans every point of the tenant, and while it does, the worker's event loop reads no provider
answer and spaCy's thread makes no progress (docs/architecture.md has the measurements). A Qdrant
server does not have that problem because it is another process; this adapter gives the embedded
shard the same property. The calling thread waits on a socket, which releases the GIL, while a
child process owns the shard and does the scanning.

The child is a plain ``python -m sinks.vectors.isolated`` rather than a ``multiprocessing``
spawn: a spawned child re-imports the parent's ``__main__`` (the whole CLI, spaCy included), and
this one needs only the engine. It ends when its socket closes, so a worker killed with ``kill -9``
does not leave an owner of the shard behind: the child flushes, releases the directory lock and
exits.
"""

from __future__ import annotations

import contextlib
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from sinks.vectors.base import SearchQuery, VectorHit, VectorPoint, VectorStore
from sinks.vectors.edge import DEFAULT_FLUSH_INTERVAL_S, EdgeVectorStore

CLOSE_TIMEOUT_S = 30.0
# A worker restarted right after a crash may start before its predecessor's child has noticed
# the closed socket and released the shard; the new child waits this long for the lock.
LOCK_WAIT_S = 10.0
_LOCKED_MARK = "open in another process"


class VectorStoreProcessError(RuntimeError):
    """The child process holding the shard is gone; the store cannot answer any more."""


class IsolatedVectorStore(VectorStore):
    """``EdgeVectorStore`` run in a child process; every call is one request and one answer.

    Calls from several threads are serialized (the shard serializes them anyway, under the GIL).
    Errors raised by the shard in the child (a wrong dimension, a locked directory) are raised here
    with their own type; a dead child raises ``VectorStoreProcessError``.
    """

    def __init__(
        self, path: Path, collection: str, *, flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S
    ) -> None:
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sinks.vectors.isolated",
                    str(theirs.fileno()),
                    str(Path(path)),
                    collection,
                    repr(float(flush_interval_s)),
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._lock = threading.Lock()
        self._closed = False
        self._description = f"IsolatedVectorStore(path={Path(path)!s}, collection={collection!r})"

    @property
    def pid(self) -> int:
        """Process id of the child that owns the shard (for memory accounting and tests)."""
        return self._process.pid

    def ensure_collection(self, dimensions: int) -> None:
        self._call("ensure_collection", dimensions)

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        if points:
            self._call("upsert", [_plain_point(p) for p in points])

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

    def search_many(self, queries: Sequence[SearchQuery]) -> list[list[VectorHit]]:
        plain = [
            SearchQuery(_plain_vector(q.vector), q.tenant_id, q.limit, q.kinds, q.exclude_source_id)
            for q in queries
        ]
        result: list[list[VectorHit]] = self._call("search_many", plain)
        return result

    def count(self, tenant_id: str | None = None) -> int:
        result: int = self._call("count", tenant_id)
        return result

    def flush(self) -> None:
        self._call("flush")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.send(("close", (), {}))
                ok, value = self._conn.recv()
            except (EOFError, OSError):
                ok, value = True, None  # the child is gone already; nothing left to flush
            finally:
                self._conn.close()
            try:
                self._process.wait(timeout=CLOSE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if not ok:
            raise value

    def __repr__(self) -> str:
        return self._description

    def _call(self, method: str, *args: Any) -> Any:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self!r} is closed")
            try:
                self._conn.send((method, args, {}))
                ok, value = self._conn.recv()
            except (EOFError, OSError) as exc:
                code = self._process.poll()
                raise VectorStoreProcessError(
                    f"{self!r}: the shard's process {self._process.pid} is gone (exit code {code})"
                ) from exc
        if ok:
            return value
        raise value


def _plain_vector(vector: Sequence[float]) -> Any:
    # float32 arrays pickle as one buffer; a list of floats pickles float by float
    return np.asarray(vector, dtype=np.float32)


def _plain_point(point: VectorPoint) -> VectorPoint:
    return VectorPoint(id=point.id, vector=_plain_vector(point.vector), payload=point.payload)


# -- the child ------------------------------------------------------------------------------------


def _open(store: EdgeVectorStore, dimensions: int) -> None:
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            store.ensure_collection(dimensions)
            return
        except RuntimeError as exc:
            if _LOCKED_MARK not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def _answer(store: EdgeVectorStore, method: str, args: tuple[Any, ...]) -> Any:
    if method == "ensure_collection":
        return _open(store, *args)
    if method in {"upsert", "search_many", "count", "flush"}:
        return getattr(store, method)(*args)
    raise ValueError(f"unknown vector store call {method!r}")


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def serve(conn: Connection, store: EdgeVectorStore) -> None:
    """Answer calls until the parent says close or goes away; then flush and release the shard."""
    try:
        while True:
            try:
                method, args, _ = conn.recv()
            except (EOFError, OSError):
                return  # the parent is gone (crashed or killed): release the shard for the next one
            if method == "close":
                try:
                    store.close()
                    conn.send((True, None))
                except Exception as exc:
                    conn.send((False, _picklable(exc)))
                return
            try:
                reply: tuple[bool, Any] = (True, _answer(store, method, args))
            except Exception as exc:
                reply = (False, _picklable(exc))
            try:
                conn.send(reply)
            except OSError:
                return
    finally:
        with contextlib.suppress(Exception):
            store.close()


def main(argv: Sequence[str]) -> None:
    fd, path, collection, flush_interval_s = argv
    conn = Connection(int(fd))
    serve(conn, EdgeVectorStore(Path(path), collection, flush_interval_s=float(flush_interval_s)))
    conn.close()


if __name__ == "__main__":
    # The child lives exactly as long as its socket: a Ctrl-C or SIGTERM meant for the worker's
    # process group must not take the shard away while the worker drains its in-flight events.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    main(sys.argv[1:])
