"""ClickHouse unavailable for a while: no trace lost, the sink's memory bounded, backlog drained after.

No ClickHouse server can run on this machine (no Docker; Debian's package is years too old), and the
embedded engine cannot be made to refuse connections. So the one stand-in here is a thin wrapper over
the real chdb client that raises ConnectionError while the test holds it "down"; the broker, topics,
sink and ClickHouse engine are all real.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from sinks.clickhouse import ClickHouseClient, connect, migrate
from sinks.service import ClickHouseSink
from streams import envelope as env
from streams.config import Settings
from streams.topics import AI_TRACES
from tests.conftest import drain_sink, run, start_sink_group_at_end


class SwitchableClient:
    """The real chdb client, refusing inserts while ``down`` (what a dead server looks like)."""

    def __init__(self, client: ClickHouseClient) -> None:
        self._client = client
        self.down = False
        self.refused = 0

    def insert(self, table: str, rows: Any, columns: Any) -> None:
        if self.down:
            self.refused += 1
            raise ConnectionError("ClickHouse is down (test)")
        self._client.insert(table, rows, columns)

    def insert_avro(self, table: str, columns: Any, container: bytes) -> None:
        if self.down:
            self.refused += 1
            raise ConnectionError("ClickHouse is down (test)")
        self._client.insert_avro(table, columns, container)


def trace(i: int, run_id: str) -> dict[str, Any]:
    return {
        "trace_id": f"{run_id}-{i}",
        "event_id": f"{run_id}-evt-{i}",
        "tenant_id": "acme",
        "workflow": "ticket",
        "workflow_version": "v1",
        "step": "classify",
        "task": "classify_intent",
        "attempt": 1,
        "gen_ai_operation_name": "classify",
        "gen_ai_provider_name": "local",
        "gen_ai_request_model": "m",
        "gen_ai_response_model": "m",
        "gen_ai_usage_input_tokens": 10,
        "gen_ai_usage_output_tokens": 1,
        "prompt_version": "p",
        "latency_ms": 1.0,
        "cost_usd": None,
        "price_version": "x",
        "cache_status": "miss",
        "status": "ok",
        "error_class": None,
        "started_at": datetime.now(UTC),
        "event_time": datetime.now(UTC),
    }


async def publish(settings: Settings, start: int, count: int, run_id: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for i in range(start, start + count):
            value, headers, _ = env.encode_event(AI_TRACES, trace(i, run_id))
            await producer.send(AI_TRACES, value, key=b"acme", headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


async def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_clickhouse_outage_pauses_the_sink_and_loses_nothing(broker: Settings) -> None:
    settings = broker.model_copy(
        update={
            "app_id": "riverbed-outage",
            "sink_batch_rows": 200,
            "sink_retry_base_s": 0.1,
            "sink_retry_cap_s": 0.4,
        }
    )
    run_id = f"outage-{datetime.now(UTC).timestamp():.0f}"
    with connect(settings.effective_clickhouse_dsn, "riverbed_outage") as real:
        migrate(real)
        client = SwitchableClient(real)
        sink = ClickHouseSink(settings, client)  # type: ignore[arg-type]

        async def scenario() -> None:
            await publish(settings, 0, 300, run_id)
            client.down = True
            task = asyncio.create_task(sink.run())

            async def refusing() -> bool:
                return client.refused >= 3 and sink.stats.paused

            await wait_for(refusing, 60, "the sink to fail inserts and pause")
            await publish(settings, 300, 1700, run_id)  # the backlog grows while ClickHouse is away
            await asyncio.sleep(0)
            buffered = len(sink._traces) + sink._in_flight
            # memory bounded: the batch being retried and nothing more; the rest waits in the topic.
            # That batch is the two partial buffers (traces and results, each under sink_batch_rows,
            # or it would have flushed) plus one fetch of at most sink_batch_rows. The session
            # broker's result topics hold earlier tests' events, so both buffers can be non-empty.
            assert buffered < 3 * settings.sink_batch_rows
            assert len(sink._traces) == 0
            assert await sink.lag() >= 2000 - 2 * settings.sink_batch_rows

            client.down = False

            async def drained() -> bool:
                return await sink.lag() == 0

            await wait_for(drained, 120, "the backlog to drain")
            assert not sink.stats.paused
            sink.stop()
            await asyncio.wait_for(task, 30)

        run(scenario())
        stored = real.query_scalar(
            "SELECT uniqExact(trace_id) FROM traces WHERE trace_id LIKE {p:String}", {"p": f"{run_id}-%"}
        )
        assert stored == 2000


class StallingClient:
    """The real chdb client, but the second trace insert hangs until released and then fails: a
    sink that dies (is cancelled) with that batch on its way into ClickHouse."""

    def __init__(self, client: ClickHouseClient) -> None:
        self._client = client
        self.calls = 0
        self.stalled = threading.Event()
        self.release = threading.Event()

    def insert(self, table: str, rows: Any, columns: Any) -> None:
        self._client.insert(table, rows, columns)

    def insert_avro(self, table: str, columns: Any, container: bytes) -> None:
        self.calls += 1
        if self.calls == 1:
            self._client.insert_avro(table, columns, container)
            return
        self.stalled.set()
        self.release.wait(60)
        raise ConnectionError("the sink died during this insert (test)")


def test_a_sink_that_dies_with_an_insert_in_flight_loses_nothing(broker: Settings) -> None:
    """Offsets move only past inserted rows: a sink cancelled mid-insert, then restarted, stores
    every trace (a commit ahead of its insert would skip the batch that never landed)."""
    settings = broker.model_copy(
        update={"app_id": f"riverbed-stall-{time.time_ns()}", "sink_batch_rows": 200}
    )
    run_id = f"stall-{time.time_ns()}"
    with connect(settings.effective_clickhouse_dsn, "riverbed_stall") as real:
        migrate(real)
        client = StallingClient(real)
        first = ClickHouseSink(settings, client)  # type: ignore[arg-type]

        async def die_mid_insert() -> None:
            await start_sink_group_at_end(settings, first.group_id)
            await publish(settings, 0, 1000, run_id)
            task = asyncio.create_task(first.run())

            async def stalled() -> bool:
                return client.stalled.is_set()

            await wait_for(stalled, 60, "the second insert to start")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            client.release.set()

        run(die_mid_insert())
        assert 0 < first.stats.rows["traces"] < 1000  # one batch went in before the sink died
        drain_sink(ClickHouseSink(settings, real))
        stored = real.query_scalar(
            "SELECT uniqExact(trace_id) FROM traces WHERE trace_id LIKE {p:String}", {"p": f"{run_id}-%"}
        )
    assert stored == 1000
