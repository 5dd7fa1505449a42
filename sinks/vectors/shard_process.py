"""The child side of ``IsolatedVectorStore``: owns one qdrant-edge shard and answers its parent.

Kept apart from ``isolated.py`` so that ``python -m sinks.vectors.shard_process`` runs a module the
package has not imported already. The child lives exactly as long as its socket: when the parent
closes it, or dies and the kernel closes it, the child flushes, releases the shard's directory
lock and exits.
"""

from __future__ import annotations

import contextlib
import pickle
import signal
import sys
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sinks.vectors.edge import EdgeVectorStore

# A worker restarted right after a crash may start before its predecessor's child has noticed
# the closed socket and released the shard; the new child waits this long for the lock.
LOCK_WAIT_S = 10.0
_LOCKED_MARK = "open in another process"


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
                    closed: tuple[bool, Any] = (True, None)
                except Exception as exc:
                    closed = (False, _picklable(exc))
                with contextlib.suppress(OSError):  # a parent that no longer waits for the answer
                    conn.send(closed)
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
