"""Noticing a partition the consumer stopped delivering, and reading it again from its commit.

Seen in tests/test_broker_restart.py (about 1 run in 25 on 2 busy cores): after the broker comes
back, the group re-forms with the same generation number, and Faust's fetch loop then drops a
fetched batch it was iterating. aiokafka's position is already past those records, so they are never
delivered, the committed offset stops short of them, and the worker sits idle with lag until
something else makes it rebalance. Nothing is lost, because the commit protects the records, but
nothing moves either.

A partition counts as stalled when it has lag (end offset past the committed offset), none of its
events is in the worker's hands, and its committed offset has not moved for ``after_s``. The
worker then seeks it to its committed offset: the records are fetched again, the ones already
processed are skipped by the processed-events table, and the commit moves on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from faust.types import TP


@dataclass(frozen=True)
class PartitionState:
    partition: TP
    committed: int | None
    """Next offset to read, as last committed; None before the first commit."""
    end: int | None
    """Offset the next record written will get (the highwater mark); None when not yet known."""
    in_flight: int
    """Events of this partition fetched but not yet acknowledged."""


class StallWatch:
    """Per partition: the committed offset last seen and since when it has not moved."""

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self._since: dict[TP, tuple[int | None, float]] = {}

    def stalled(self, states: Iterable[PartitionState], now: float) -> list[PartitionState]:
        """The partitions to read again from their committed offset. A partition that is idle for
        a good reason (caught up, or working on events) restarts its clock; so does one just
        re-read, so a seek is not repeated before ``after_s`` has passed again."""
        due = []
        seen = set()
        for state in states:
            seen.add(state.partition)
            lagging = state.committed is not None and state.end is not None and state.end > state.committed
            previous = self._since.get(state.partition)
            if not lagging or state.in_flight or previous is None or previous[0] != state.committed:
                self._since[state.partition] = (state.committed, now)
                continue
            if now - previous[1] >= self.after_s:
                due.append(state)
                self._since[state.partition] = (state.committed, now)
        for gone in self._since.keys() - seen:
            del self._since[gone]
        return due
