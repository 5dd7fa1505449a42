"""The embedded qdrant-edge shard in a process of its own, behind the same port.

qdrant-edge's calls hold the GIL for as long as they run. A similar-ticket search of a batch of
256 scans every point of the tenant, and while it does, the worker's event loop reads no provider
answer and spaCy's thread makes no progress (docs/architecture.md has the measurements). A Qdrant
server does not have that problem because it is another process; this adapter gives the embedded
shard the same property. The calling thread waits on a socket, which releases the GIL, while a
child process owns the shard and does the scanning.

The child is a plain ``python -m sinks.vectors.shard_process`` rather than a ``multiprocessing``
spawn: a spawned child re-imports the parent's ``__main__`` (the whole CLI, spaCy included), and
this one needs only the engine. It ends when its socket closes, so a worker killed with ``kill -9``
does not leave an owner of the shard behind: the child flushes, releases the directory lock and
exits.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from sinks.vectors.base import BatchSearchingStore, SearchQuery, VectorHit, VectorPoint
from sinks.vectors.edge import DEFAULT_FLUSH_INTERVAL_S

SHARD_PROCESS_MODULE = "sinks.vectors.shard_process"
CLOSE_TIMEOUT_S = 30.0
# A batch of 256 searches over 50k points takes ~0.5 s; a child silent for this long is hung, and
# a hung child would hold every later batch of the worker behind it.
CALL_TIMEOUT_S = 60.0
log = structlog.get_logger(__name__)


class VectorStoreProcessError(RuntimeError):
    """The child process holding the shard is gone; the store cannot answer any more."""


class IsolatedVectorStore(BatchSearchingStore):
    """``EdgeVectorStore`` run in a child process; every call is one request and one answer.

    Calls from several threads are serialized (the shard serializes them anyway, under the GIL).
    Errors raised by the shard in the child (a wrong dimension, a locked directory) are raised here
    with their own type. A child that dies, or stays silent for ``call_timeout_s`` (it is then
    killed), fails the call in flight with ``VectorStoreProcessError``; the next call starts a new
    one.
    """

    def __init__(
        self,
        path: Path,
        collection: str,
        *,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        call_timeout_s: float = CALL_TIMEOUT_S,
    ) -> None:
        self._args = [str(Path(path)), collection, repr(float(flush_interval_s))]
        self._call_timeout_s = call_timeout_s
        self._lock = threading.Lock()
        self._closed = False
        self._dimensions: int | None = None
        self._description = f"IsolatedVectorStore(path={Path(path)!s}, collection={collection!r})"
        self._process, self._conn = self._spawn()

    def _spawn(self) -> tuple[subprocess.Popen[bytes], Connection]:
        ours, theirs = socket.socketpair()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", SHARD_PROCESS_MODULE, str(theirs.fileno()), *self._args],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        return process, Connection(ours.detach())

    @property
    def pid(self) -> int:
        """Process id of the child that owns the shard (for memory accounting and tests)."""
        return self._process.pid

    def ensure_collection(self, dimensions: int) -> None:
        self._call("ensure_collection", dimensions)
        self._dimensions = dimensions

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        if points:
            self._call("upsert", [_plain_point(p) for p in points])

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
                ok, value = self._roundtrip("close", (), CLOSE_TIMEOUT_S)
            except VectorStoreProcessError:
                ok, value = True, None  # gone or hung: the WAL already holds every acknowledged write
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
            if self._process.poll() is not None:
                self._restart()
            ok, value = self._roundtrip(method, args, self._call_timeout_s)
        if ok:
            return value
        raise value

    def _roundtrip(self, method: str, args: tuple[Any, ...], timeout_s: float) -> tuple[bool, Any]:
        """Send one call and return the child's ``(ok, value)``. A child that is gone, or silent
        for ``timeout_s`` (then killed), raises ``VectorStoreProcessError``: the call in flight is
        lost with it (its caller retries the batch), and the next call starts a new child."""
        try:
            self._conn.send((method, args, {}))
            if self._conn.poll(timeout_s):
                answer: tuple[bool, Any] = self._conn.recv()
                return answer
        except (EOFError, OSError) as exc:
            raise VectorStoreProcessError(
                f"{self!r}: the shard's process {self._process.pid} is gone (exit code {self._reap()})"
            ) from exc
        raise VectorStoreProcessError(
            f"{self!r}: the shard's process {self._process.pid} gave no answer to {method} within "
            f"{timeout_s:g}s and was killed (exit code {self._reap()})"
        )

    def _reap(self) -> int:
        """Make sure the child is gone (killing it if it still runs) and return its exit code."""
        code = self._process.poll()
        if code is None:
            self._process.kill()
            code = self._process.wait()
        return code

    def _restart(self) -> None:
        """Start a new child after the last one died; it reopens the shard from disk (the WAL
        holds every write it acknowledged)."""
        log.warning("vector_store_process_restarted", died=self._process.pid, exit_code=self._process.poll())
        self._conn.close()
        self._process, self._conn = self._spawn()
        if self._dimensions is not None:
            ok, value = self._roundtrip("ensure_collection", (self._dimensions,), self._call_timeout_s)
            if not ok:
                raise value


def _plain_vector(vector: Sequence[float]) -> Any:
    # float32 arrays pickle as one buffer; a list of floats pickles float by float
    return np.asarray(vector, dtype=np.float32)


def _plain_point(point: VectorPoint) -> VectorPoint:
    return VectorPoint(id=point.id, vector=_plain_vector(point.vector), payload=point.payload)
