"""The exact-answer cache and request coalescing, both keyed by tenant.

The key hashes the tenant, the task, the policy's fingerprint (so an edited route or prompt never
serves an answer made under the old one) and the normalised request. The tenant is part of every key
by construction, so a cached answer cannot cross tenants.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cachetools import TLRUCache

T = TypeVar("T")


def request_key(tenant: str, task: str, policy_fingerprint: str, texts: tuple[Any, ...], extra: Any) -> str:
    """``texts``: nested tuples of the request's strings and flags, hashed through ``repr`` (exact and
    unambiguous for those types, and cheap); ``extra`` (schema, options) as sorted-key JSON."""
    blob = repr((tenant, task, policy_fingerprint, texts))
    if extra:
        blob += json.dumps(extra, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(blob.encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()


@dataclass(frozen=True)
class _Entry(Generic[T]):
    value: T
    ttl_s: float


class ExactCache(Generic[T]):
    def __init__(self, max_entries: int = 50_000) -> None:
        self._items: TLRUCache[str, _Entry[T]] = TLRUCache(
            maxsize=max_entries, ttu=lambda _k, entry, now: now + entry.ttl_s, timer=time.monotonic
        )

    def get(self, key: str) -> T | None:
        entry = self._items.get(key)
        return None if entry is None else entry.value

    def put(self, key: str, value: T, ttl_s: float) -> None:
        self._items[key] = _Entry(value, ttl_s)

    def __len__(self) -> int:
        return len(self._items)


class Coalescer(Generic[T]):
    """Identical requests in flight at the same time share one provider call: the first caller makes
    it, the others await its outcome (answer or error)."""

    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Future[T]] = {}

    async def run(self, key: str, call: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """The answer, and whether it was shared from another caller's call."""
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending), True
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await call()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: followers may not exist
            raise
        else:
            future.set_result(value)
            return value, False
        finally:
            del self._inflight[key]
