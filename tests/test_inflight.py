"""Batches in flight: acked strictly in the order taken, bounded, never past a failed batch, and
order-sensitive stages entered in turn. Pure asyncio: the work is scripted with events, not sleeps."""

from __future__ import annotations

import asyncio

import pytest

from streams.inflight import InFlightBatches, StoppedBeforeStart, Turn


class Script:
    """Work whose completion the test controls: batch ``n`` returns when ``release(n)`` is called."""

    def __init__(self) -> None:
        self.gates: dict[int, asyncio.Event] = {}
        self.started: list[int] = []
        self.acked: list[int] = []

    def work(self, n: int, fail: bool = False):  # type: ignore[no-untyped-def]
        gate = self.gates.setdefault(n, asyncio.Event())

        async def run(turn: Turn) -> None:
            self.started.append(n)
            await gate.wait()
            if fail:
                raise RuntimeError(f"batch {n} broke")

        return run

    def release(self, n: int) -> None:
        self.gates.setdefault(n, asyncio.Event()).set()

    async def ack(self, events: list[int]) -> None:
        self.acked.extend(events)


async def until(condition, what: str, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.001)

    try:
        await asyncio.wait_for(poll(), timeout_s)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_a_later_batch_that_finishes_first_waits_to_be_acked() -> None:
    script = Script()
    batches = InFlightBatches(3, script.ack)
    for n in range(3):
        await batches.submit([n], script.work(n))
    await until(lambda: script.started == [0, 1, 2], "all three batches to start side by side")
    script.release(2)
    script.release(1)
    await asyncio.sleep(0.01)
    assert script.acked == []  # batch 0 still in flight: acking 1 or 2 could commit past it
    script.release(0)
    assert await batches.drain(5)
    assert script.acked == [0, 1, 2]


async def test_submit_waits_while_depth_batches_are_unacked() -> None:
    script = Script()
    batches = InFlightBatches(2, script.ack)
    await batches.submit([0], script.work(0))
    await batches.submit([1], script.work(1))
    third = asyncio.create_task(batches.submit([2], script.work(2)))
    await asyncio.sleep(0.01)
    assert not third.done() and batches.in_flight == 2
    script.release(0)
    await until(third.done, "a slot to free once batch 0 is acked")
    assert script.acked == [0]
    script.release(1)
    script.release(2)
    assert await batches.drain(5)
    assert script.acked == [0, 1, 2]


async def test_a_failed_batch_and_every_later_one_stay_unacked() -> None:
    script = Script()
    batches = InFlightBatches(3, script.ack)
    await batches.submit([0], script.work(0))
    await batches.submit([1], script.work(1, fail=True))
    await batches.submit([2], script.work(2))
    for n in range(3):
        script.release(n)
    assert not await batches.drain(5)
    assert script.acked == [0]
    with pytest.raises(RuntimeError, match="stay unacked"):
        await batches.submit([3], script.work(3))


async def test_drain_gives_up_on_a_batch_that_does_not_finish_in_time() -> None:
    script = Script()
    batches = InFlightBatches(2, script.ack)
    await batches.submit([0], script.work(0))
    assert not await batches.drain(0.05)
    assert script.acked == []
    script.release(0)
    assert await batches.drain(5)
    assert script.acked == [0]


async def test_a_batch_waiting_to_start_is_given_up_when_the_drain_begins() -> None:
    """A retried batch waits for its due time before it does anything: a shutdown must not wait out
    that backoff (up to retry_backoff_cap_s) for a batch that has done nothing. It stays unacked,
    with the batch after it, and is redelivered."""
    script = Script()
    batches = InFlightBatches(3, script.ack)
    await batches.submit([0], script.work(0))
    stopped: list[BaseException] = []

    async def due_in_a_minute(turn: Turn) -> None:
        try:
            await turn.wait_to_start(60)
        except StoppedBeforeStart as exc:
            stopped.append(exc)
            raise
        script.started.append(1)

    await batches.submit([1], due_in_a_minute)
    await batches.submit([2], script.work(2))
    script.release(0)
    script.release(2)
    await until(lambda: script.acked == [0], "batch 0 to be acked")
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert not await batches.drain(30)
    assert loop.time() - began < 5  # not the minute batch 1 was due in
    assert stopped and 1 not in script.started
    assert script.acked == [0]


async def test_a_batch_waits_to_start_for_as_long_as_asked_while_nothing_stops() -> None:
    turn = Turn()
    loop = asyncio.get_running_loop()
    began = loop.time()
    await turn.wait_to_start(0.2)
    assert loop.time() - began >= 0.2


async def test_stages_are_entered_in_the_order_batches_were_taken() -> None:
    first, second = Turn(), None
    second = Turn(first)
    entered: list[str] = []
    first_may_enter = asyncio.Event()

    async def run(turn: Turn, name: str, wait: asyncio.Event | None) -> None:
        if wait is not None:
            await wait.wait()
        async with turn.stage("retrieve"):
            entered.append(name)
        turn.finish()

    later = asyncio.create_task(run(second, "second", None))
    earlier = asyncio.create_task(run(first, "first", first_may_enter))
    await asyncio.sleep(0.01)
    assert entered == []  # the second batch is ready but must not overtake the first
    first_may_enter.set()
    await asyncio.wait_for(asyncio.gather(earlier, later), 5)
    assert entered == ["first", "second"]


async def test_a_batch_that_never_reaches_a_stage_does_not_block_the_next() -> None:
    first = Turn()
    second = Turn(first)
    first.finish()  # e.g. every event of the first batch failed before retrieval
    async with asyncio.timeout(5), second.stage("retrieve"):
        pass
