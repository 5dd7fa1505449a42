"""The stall watchdog's rule: only a partition with lag, nothing in the worker's hands and a commit
that has not moved for the whole interval is read again, and not again before another interval.
(The stall it heals shows up in tests/test_broker_restart.py, too rarely to provoke on demand.)"""

from __future__ import annotations

from faust.types import TP

from streams.stall import PartitionState, StallWatch

P0 = TP("ticket.created.v1", 0)
P1 = TP("ticket.created.v1", 1)


def state(
    tp: TP = P0, committed: int | None = 116, end: int | None = 140, in_flight: int = 0
) -> PartitionState:
    return PartitionState(tp, committed, end, in_flight)


def test_lag_with_nothing_in_flight_and_no_progress_is_a_stall_after_the_interval() -> None:
    watch = StallWatch(after_s=30)
    assert watch.stalled([state()], now=0) == []
    assert watch.stalled([state()], now=29.9) == []
    assert watch.stalled([state()], now=30) == [state()]
    # just re-read: the next seek waits a full interval again
    assert watch.stalled([state()], now=45) == []
    assert watch.stalled([state()], now=60) == [state()]


def test_work_in_hand_progress_or_no_lag_restart_the_clock() -> None:
    watch = StallWatch(after_s=30)
    watch.stalled([state()], now=0)
    assert watch.stalled([state(in_flight=3)], now=20) == []  # events being processed
    assert watch.stalled([state()], now=49) == []
    assert watch.stalled([state()], now=50) == [state()]

    watch = StallWatch(after_s=30)
    watch.stalled([state(committed=100)], now=0)
    assert watch.stalled([state(committed=116)], now=20) == []  # the commit moved
    assert watch.stalled([state(committed=116)], now=49) == []
    assert watch.stalled([state(committed=116)], now=50) == [state()]

    watch = StallWatch(after_s=30)
    caught_up = state(committed=140, end=140)
    assert watch.stalled([caught_up], now=0) == [] and watch.stalled([caught_up], now=1000) == []


def test_unknown_offsets_are_never_a_stall_and_partitions_are_judged_apart() -> None:
    watch = StallWatch(after_s=10)
    unknown = [state(P0, committed=None), state(P1, end=None)]
    assert watch.stalled(unknown, now=0) == [] and watch.stalled(unknown, now=100) == []

    watch = StallWatch(after_s=10)
    watch.stalled([state(P0), state(P1)], now=0)
    assert watch.stalled([state(P0), state(P1, in_flight=1)], now=10) == [state(P0)]
    # a partition that went away (rebalanced to another worker) is forgotten; back, it starts over
    watch.stalled([state(P0)], now=11)
    assert watch.stalled([state(P1)], now=20) == []
    assert watch.stalled([state(P1)], now=30) == [state(P1)]
