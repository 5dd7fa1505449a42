"""A size- and time-bounded buffer for sink writes, independent of Kafka.

Why: ClickHouse wants few, large inserts (every insert creates a part that later has to be merged), while
a trace or result must still reach the table soon after it was produced even when traffic is light. The
buffer therefore flushes when it holds ``max_rows`` items *or* when its oldest item has waited
``max_age_s`` seconds, whichever comes first. The age is measured from the first item added since the last
drain, so an idle buffer never becomes due and a quiet period does not make the next item flush at once.

The buffer does no I/O and no locking: the consumer loop owning it decides when to call ``drain`` and
where the rows go, and can sleep ``seconds_until_due()`` between polls. The clock is injectable so the
age bound can be tested without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

__all__ = ["BatchBuffer"]

T = TypeVar("T")


class BatchBuffer(Generic[T]):
    """Collects items until ``max_rows`` are held or the oldest is ``max_age_s`` old."""

    def __init__(self, max_rows: int, max_age_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        if not max_age_s > 0:
            raise ValueError(f"max_age_s must be > 0, got {max_age_s}")
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self._clock = clock
        self._items: list[T] = []
        self._rows = 0
        self._oldest_at: float | None = None

    def add(self, item: T, rows: int = 1) -> None:
        """Buffer ``item``, which counts as ``rows`` rows towards ``max_rows``."""
        if self._oldest_at is None:
            self._oldest_at = self._clock()
        self._items.append(item)
        self._rows += rows

    def extend(self, items: Iterable[T]) -> None:
        """Add many items; the buffer may grow past ``max_rows`` (``drain`` returns them all)."""
        for item in items:
            self.add(item)

    def age(self) -> float:
        """Seconds the oldest buffered item has waited; 0.0 when empty."""
        if self._oldest_at is None:
            return 0.0
        return self._clock() - self._oldest_at

    def due(self) -> bool:
        """True when the size bound is reached or the oldest item is at least ``max_age_s`` old."""
        if not self._items:
            return False
        return self._rows >= self.max_rows or self.age() >= self.max_age_s

    def seconds_until_due(self) -> float | None:
        """None when empty (nothing will ever be due), 0.0 when due now, else the wait for the age bound."""
        if not self._items:
            return None
        if self.due():
            return 0.0
        return self.max_age_s - self.age()

    def drain(self) -> list[T]:
        """Take every buffered item, oldest first, and reset the age."""
        items, self._items = self._items, []
        self._rows = 0
        self._oldest_at = None
        return items

    @property
    def rows(self) -> int:
        """Rows held: the items' counts as given to ``add``."""
        return self._rows

    def __len__(self) -> int:
        """Items held (each may count as several rows)."""
        return len(self._items)
