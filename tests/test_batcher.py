"""BatchBuffer size and age bounds, driven by an injected fake clock so no test sleeps."""

from __future__ import annotations

import pytest

from sinks.batcher import BatchBuffer


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_due_when_size_reached(clock: FakeClock) -> None:
    buf: BatchBuffer[int] = BatchBuffer(max_rows=3, max_age_s=60.0, clock=clock)
    buf.add(1)
    buf.add(2)
    assert not buf.due()
    assert len(buf) == 2
    buf.add(3)
    assert buf.due()
    assert buf.seconds_until_due() == 0.0
    assert buf.drain() == [1, 2, 3]
    assert len(buf) == 0 and not buf.due()


def test_an_item_of_many_rows_counts_them_all(clock: FakeClock) -> None:
    buf: BatchBuffer[str] = BatchBuffer(max_rows=100, max_age_s=60.0, clock=clock)
    buf.add("a batch message", rows=60)
    assert not buf.due() and (len(buf), buf.rows) == (1, 60)
    buf.add("another", rows=40)
    assert buf.due()
    assert buf.drain() == ["a batch message", "another"]
    assert (len(buf), buf.rows) == (0, 0) and not buf.due()


def test_due_when_oldest_item_reaches_max_age(clock: FakeClock) -> None:
    buf: BatchBuffer[str] = BatchBuffer(max_rows=100, max_age_s=2.0, clock=clock)
    buf.add("a")
    clock.advance(1.5)
    buf.add("b")  # a newer item does not restart the age
    assert not buf.due()
    assert buf.seconds_until_due() == pytest.approx(0.5)
    clock.advance(0.5)
    assert buf.due()
    assert buf.seconds_until_due() == 0.0
    assert buf.drain() == ["a", "b"]


def test_empty_buffer_is_never_due(clock: FakeClock) -> None:
    buf: BatchBuffer[int] = BatchBuffer(max_rows=1, max_age_s=1.0, clock=clock)
    clock.advance(3600)
    assert not buf.due()
    assert buf.seconds_until_due() is None
    assert buf.drain() == []


def test_age_counts_from_first_item_after_drain(clock: FakeClock) -> None:
    buf: BatchBuffer[int] = BatchBuffer(max_rows=10, max_age_s=5.0, clock=clock)
    buf.add(1)
    clock.advance(10)
    assert buf.due()
    buf.drain()
    clock.advance(100)  # idle time must not count against the next item
    buf.add(2)
    assert not buf.due()
    assert buf.seconds_until_due() == pytest.approx(5.0)
    clock.advance(4.999)
    assert not buf.due()
    clock.advance(0.001)
    assert buf.due()


def test_extend_may_overshoot_and_drain_returns_everything_in_order(clock: FakeClock) -> None:
    buf: BatchBuffer[int] = BatchBuffer(max_rows=4, max_age_s=1.0, clock=clock)
    buf.extend(range(10))
    assert len(buf) == 10 and buf.due()
    assert buf.drain() == list(range(10))
    buf.extend([])
    assert len(buf) == 0 and buf.seconds_until_due() is None


def test_default_clock_is_monotonic() -> None:
    buf: BatchBuffer[int] = BatchBuffer(max_rows=10, max_age_s=3600.0)
    buf.add(1)
    remaining = buf.seconds_until_due()
    assert remaining is not None and 0 < remaining <= 3600.0


@pytest.mark.parametrize(("max_rows", "max_age_s"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_rejects_bounds_that_never_or_always_flush(max_rows: int, max_age_s: float) -> None:
    with pytest.raises(ValueError):
        BatchBuffer[int](max_rows=max_rows, max_age_s=max_age_s)
