"""Noticing a partition the consumer stopped delivering, and reading it again from its commit.

Seen in tests/test_broker_restart.py, in 1 of 27 runs on 2 busy cores. After the broker came back,
the group re-formed under the same generation number. From then on aiokafka's fetch position stood
at the end of the partition while Faust's commit stayed at 116 with nothing in flight, for
minutes: records handed over by aiokafka were dropped inside Faust, which cannot tell this
rebalance from the one before. Nothing is lost, because the commit stops before the dropped
records, but nothing moves either. With this watch, 30 of 30 runs passed; 4 of them logged a
re-read, each about 35 s after the rebalance.

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
