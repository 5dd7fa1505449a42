"""Several micro-batches in flight per agent, with offsets acked strictly behind finished batches.

Why not Faust's own ``concurrency>1``: it can commit past an event still in flight (faust #606), so
a crash loses it. Why not one batch at a time: a ticket batch uses ONNX on both cores, then spaCy on
one, then the vector store and the broker, so with one batch in flight each resource idles while
the others work.

The mechanism: the agent takes batches with manual acks (``noack_take``) and submits each here.
Batches run side by side (at most ``depth`` not yet acked, which bounds memory and makes the agent
stop taking, i.e. backpressure), but each is acked only after its work returned *and* the batch taken
before it was acked. Within a partition, events are therefore acked in offset order, and Faust's
committed offset can never move past an event whose output is not yet durable.

Work that must see batches in the order they were taken (the ticket workflow's search-then-insert
into the similarity store, so results equal one-batch-at-a-time processing) runs inside
``turn.stage(name)``: a batch enters a stage only after the batch before it left that stage, or
finished without reaching it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any


class StoppedBeforeStart(Exception):
    """The agent began stopping while the batch still waited to start; it was not processed."""


class Turn:
    """A batch's place in line for the stages that must run in consumption order."""

    def __init__(self, previous: Turn | None = None, stopping: asyncio.Event | None = None) -> None:
        self._previous = previous
        self._gates: dict[str, asyncio.Event] = {}
        self._finished = False
        self._stopping = stopping or asyncio.Event()

    async def wait_to_start(self, seconds: float) -> None:
        """Sleep ``seconds`` before doing any work (a retried batch waiting for its due time), or
        raise ``StoppedBeforeStart`` as soon as the agent begins stopping: a batch that has done
        nothing need not hold the shutdown for its backoff, it is redelivered instead."""
        if self._stopping.is_set():
            raise StoppedBeforeStart("the agent is stopping")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
            raise StoppedBeforeStart("the agent began stopping while the batch waited to start")

    @contextlib.asynccontextmanager
    async def stage(self, name: str) -> AsyncIterator[None]:
        if self._previous is not None:
            await self._previous._gate(name).wait()
        try:
            yield
        finally:
            self._gate(name).set()

    def finish(self) -> None:
        """Open every gate, also of stages this batch never reached, and let go of the line behind
        us (so a long run does not keep a chain of every batch alive)."""
        self._finished = True
        self._previous = None
        for gate in self._gates.values():
            gate.set()

    def _gate(self, name: str) -> asyncio.Event:
        gate = self._gates.get(name)
        if gate is None:
            gate = self._gates[name] = asyncio.Event()
            if self._finished:
                gate.set()
        return gate


Ack = Callable[[Sequence[Any]], Awaitable[None]]
Work = Callable[[Turn], Awaitable[None]]


class InFlightBatches:
    """Runs submitted batches concurrently and acks them in submission order.

    ``work`` must not return before the batch's output is durable; if it raises or is cancelled,
    the batch and every batch after it stay unacked (they will be redelivered), and the error
    surfaces from the next ``submit`` or ``drain`` so the agent can stop.
    """

    def __init__(self, depth: int, ack: Ack) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._slots = asyncio.Semaphore(depth)
        self._ack = ack
        self._last_turn: Turn | None = None
        self._last_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self._stopping = asyncio.Event()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def submit(self, events: Sequence[Any], work: Work) -> None:
        """Start ``work`` for ``events``; waits while ``depth`` batches are still unacked."""
        await self._slots.acquire()
        if self._failure is not None:
            self._slots.release()
            raise RuntimeError("a batch in flight failed; it and the batches after it stay unacked") from (
                self._failure
            )
        turn = Turn(self._last_turn, self._stopping)
        task = asyncio.create_task(self._run(events, work, turn, self._last_task))
        self._last_turn, self._last_task = turn, task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout_s: float) -> bool:
        """Wait until no batch is in flight; True if every one was acked. False if that did not
        happen within ``timeout_s`` (``in_flight`` then says how many still run), or if a batch
        failed or was still waiting to start (``Turn.wait_to_start``): those and the batches after
        them stay unacked and are redelivered."""
        self._stopping.set()
        if self._tasks:
            _, running = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            if running:
                return False
        last = self._last_task
        if last is not None and not last.cancelled():
            last.exception()  # retrieved: a failure is recorded in _failure; the others await theirs
        return self._failure is None

    async def _run(
        self, events: Sequence[Any], work: Work, turn: Turn, before: asyncio.Task[None] | None
    ) -> None:
        try:
            try:
                await work(turn)
            finally:
                turn.finish()
            if before is not None:
                await before  # raises if an earlier batch failed: then this one must not be acked
            await self._ack(events)
        except Exception as exc:
            self._failure = self._failure or exc
            raise
        finally:
            self._slots.release()
