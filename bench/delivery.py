"""Delivery figures: how long the pipeline takes to process events again after a broker restart
(and that nothing published before it is lost), and how well one worker turns concurrency into
throughput when its model calls are slow.

    python bench/delivery.py [--rounds 3] [--only restart|concurrency|processed]

Brings up its own broker on a free port with data in a temp dir, trains a small intent head, runs a
real worker, then per round: stops the broker (SIGTERM by PID), starts it again on the same data
dir, publishes fresh tickets the moment it answers metadata, and times until the first of them
comes back as a result. Prints the median as ``broker_restart_recovery_s``.

``concurrency_efficiency``: the ticket workflow with every model step routed to the fake provider
(gateway/fake_provider.py) answering in 200 ms. A ticket's critical path is three calls in a row
(classify and extract side by side, then embed, then summarize) = 600 ms, so with C tickets in flight
the ideal is C / 0.6 s tickets/s (no provider limit is set). One worker per level, C tickets in flight
as C / ``--batch`` batches of ``--batch`` (16); throughput = tickets completed between the first and
the last result / that time. Each level runs ``--rounds`` times; the curve of medians is printed,
and the figure is the median efficiency at C = 256.

Why batches of 16 (32 until 2026-11-24): every remote stage of a batch sends its requests at once
and ends with the slowest answer, and with one event loop on each side of the wire the last of a
burst waits longest. At 256 in flight, alternating (2026-11-24): 16 batches of 16 gave 0.894,
0.899, 0.908 against 0.861, 0.877, 0.850 for 8 of 32 (docs/architecture.md).

``--only processed`` (no FIGURE, a supporting number): how long a starting worker takes to load the
processed-events table (streams/processed.py) from a changelog of ``--markers`` records; median of 3.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import embedded_stack, figure
from gateway.fake_provider import Behaviour, FakeProvider
from gateway.local.training import BANKING77_TEST, BANKING77_TRAIN, train
from streams import envelope as env
from streams import processes, stack
from streams.config import Settings
from streams.offsets import end_offsets, partitions_of, reader_from
from streams.processed import ProcessedChangelog, ProcessedEvents
from streams.publish import Published, publish, read_rows, ticket_drafts
from streams.topics import PROCESSED_EVENTS, TICKET_TRIAGED

TICKETS_PER_ROUND = 200
PROVIDER_LATENCY_S = 0.2
CRITICAL_PATH_CALLS = 3
REMOTE_TICKET_POLICY = """
version = "bench-concurrency"
[providers.local]
kind = "local"
[providers.llm]
kind = "openai"
base_url = "{url}/v1"
timeout_s = 10
max_connections = 1024
[tasks.classify_intent]
routes = [{{ provider = "llm", model = "intent" }}]
[tasks.extract]
routes = [{{ provider = "llm", model = "entities" }}]
[tasks.embed]
routes = [{{ provider = "llm", model = "embedder", dimensions = 384 }}]
[tasks.summarize]
routes = [{{ provider = "llm", model = "summary" }}]
[tasks.classify_topic]
routes = [{{ provider = "local" }}]
"""


async def first_result_after(settings: Settings, causes: set[str], timeout_s: float) -> tuple[float, int]:
    """Monotonic time the first result for ``causes`` arrived, and how many arrived in all."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = await partitions_of(consumer, [TICKET_TRIAGED])
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        first: float | None = None
        seen: set[str] = set()
        deadline = time.monotonic() + timeout_s
        while seen != causes and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=100, max_records=5000)).values():
                for r in records:
                    cause = env.header_map(r.headers).get("ce_causationid", "")
                    if cause in causes:
                        seen.add(cause)
                        first = first or time.monotonic()
        if first is None:
            raise TimeoutError(f"no result within {timeout_s}s")
        return first, len(seen)
    finally:
        await consumer.stop()


def tickets(rows: list[dict[str, str]], round_no: int) -> list[dict[str, str]]:
    return [{**r, "ticket_id": f"B{round_no}-{i:04d}"} for i, r in enumerate(rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="broker restarts; runs per concurrency level")
    parser.add_argument("--only", choices=["restart", "concurrency", "processed"])
    parser.add_argument("--markers", type=int, default=20_000, help="changelog size for --only processed")
    parser.add_argument("--levels", default="16,64,128,256", help="tickets in flight, comma-separated")
    parser.add_argument("--batch", type=int, default=16, help="tickets per batch")
    args = parser.parse_args()
    with embedded_stack("delivery") as settings:
        if args.only == "processed":
            asyncio.run(processed_table_load(settings, args.markers))
            return
        train_small_head(settings)
        if args.only in (None, "restart"):
            run_rounds(settings, args.rounds)
        if args.only in (None, "concurrency"):
            concurrency_curve(settings, [int(x) for x in args.levels.split(",")], args.batch, args.rounds)


async def processed_table_load(settings: Settings, markers: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
    await producer.start()
    try:
        sent = [
            await producer.send(PROCESSED_EVENTS, b"", str(uuid.uuid4()).encode()) for _ in range(markers)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    seconds = []
    for _ in range(3):
        changelog = ProcessedChangelog(settings.kafka_bootstrap, ProcessedEvents(86400, 1_000_000))
        started = time.perf_counter()
        loaded = await changelog.start()
        seconds.append(time.perf_counter() - started)
        await changelog.stop()
        assert loaded == markers, f"loaded {loaded} of {markers}"
    median = statistics.median(seconds)
    print(
        f"processed-events table: {markers:,} markers loaded in {median:.3f}s (median of 3), "
        f"{markers / median:,.0f}/s"
    )


def train_small_head(settings: Settings) -> None:
    subset = settings.data_dir / "train-subset.csv"
    with BANKING77_TRAIN.open(newline="", encoding="utf-8") as src, subset.open("w", newline="") as dst:
        rows = list(csv.DictReader(src))[::5]
        writer = csv.DictWriter(dst, fieldnames=["text", "category"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "category": r["category"]} for r in rows)
    train(settings.models_dir, settings.intent_model, subset)


async def result_times(
    settings: Settings, start: dict[TopicPartition, int], causes: set[str], timeout_s: float
) -> list[float]:
    """Monotonic arrival time of the first result of each cause, reading from ``start``."""
    consumer = await reader_from(settings.kafka_bootstrap, start)
    try:
        seen: dict[str, float] = {}
        deadline = time.monotonic() + timeout_s
        while len(seen) < len(causes) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=100, max_records=5000)).values():
                now = time.monotonic()
                for r in records:
                    cause = env.header_map(r.headers).get("ce_causationid", "")
                    if cause in causes:
                        seen.setdefault(cause, now)
        if len(seen) < len(causes):
            raise TimeoutError(f"{len(seen)}/{len(causes)} results within {timeout_s}s")
        return sorted(seen.values())
    finally:
        await consumer.stop()


async def timed_batch(settings: Settings, rows: list[dict[str, str]], tenant: str) -> list[float]:
    start = await end_offsets(settings.kafka_bootstrap, [TICKET_TRIAGED])
    published = await publish(settings.kafka_bootstrap, list(ticket_drafts(rows, tenant=tenant)))
    return await result_times(settings, start, {p.event_id for p in published}, timeout_s=600)


def fake_answers(fake: FakeProvider) -> None:
    """Every model answers in PROVIDER_LATENCY_S, in the shape its task's contract asks for."""
    answers = {
        "intent": '{"label": "card_arrival", "confidence": 0.9}',
        "entities": '{"entities": []}',
        "summary": "Customer asks where the card is.",
    }
    fake.set_default(Behaviour(latency_s=PROVIDER_LATENCY_S))
    for model, content in answers.items():
        fake.set_default(Behaviour(latency_s=PROVIDER_LATENCY_S, content=content), model=model)


def one_level(settings: Settings, sample: list[dict[str, str]], level: int, batch: int) -> float:
    """Tickets/s of one worker with ``level`` tickets in flight (level/batch batches of ``batch``)."""
    batch = min(batch, level)
    level_settings = settings.model_copy(
        update={
            "worker_batch_size": batch,
            "worker_inflight_batches": max(1, level // batch),
            "worker_batch_window_s": 0.05,
        }
    )
    count = max(300, int(level / (CRITICAL_PATH_CALLS * PROVIDER_LATENCY_S) * 12))
    rows = [{**sample[i % len(sample)], "ticket_id": f"C{level}-{i:05d}"} for i in range(count)]
    log_path = Path(tempfile.gettempdir()) / f"riverbed-bench-concurrency-{level}.log"
    log_path.unlink(missing_ok=True)
    worker = processes.spawn(level_settings, "worker", ["worker"], log_path=log_path)
    try:
        warm = [{**r, "ticket_id": r["ticket_id"] + "w"} for r in rows[:level]]
        asyncio.run(timed_batch(settings, warm, "warm"))
        times = asyncio.run(timed_batch(settings, rows, f"c{level}"))
    finally:
        processes.stop(worker.pid)
    return (len(times) - 1) / (times[-1] - times[0])


def concurrency_curve(settings: Settings, levels: list[int], batch: int, rounds: int) -> None:
    """Each level ``rounds`` times with a fresh worker; the efficiency per level is the median, as
    one run of the same build varies by about ±0.06 on this machine."""
    with FakeProvider(log_limit=0) as fake:
        fake_answers(fake)
        policy = settings.data_dir / "routes-remote.toml"
        policy.write_text(REMOTE_TICKET_POLICY.format(url=fake.url), encoding="utf-8")
        remote = settings.model_copy(update={"gateway_policy_file": policy})
        sample = list(read_rows(BANKING77_TEST))
        efficiency = {}
        for level in levels:
            ideal = level / (CRITICAL_PATH_CALLS * PROVIDER_LATENCY_S)
            runs = [one_level(remote, sample, level, batch) / ideal for _ in range(rounds)]
            efficiency[level] = statistics.median(runs)
            each = ", ".join(f"{e:.3f}" for e in runs)
            print(f"in flight {level:4d}: ideal {ideal:7.1f} tickets/s, ", end="")
            print(f"efficiency {efficiency[level]:.3f} (runs {each})", flush=True)
        if 256 in efficiency:
            figure("concurrency_efficiency", efficiency[256])


def run_rounds(settings: Settings, rounds: int) -> None:
    worker = None
    try:
        sample = list(read_rows(BANKING77_TEST))[:TICKETS_PER_ROUND]
        worker = processes.spawn(settings, "worker", ["worker"])

        def publish_round(round_no: int) -> list[Published]:
            drafts = list(ticket_drafts(tickets(sample, round_no), tenant="b"))
            return asyncio.run(publish(settings.kafka_bootstrap, drafts))

        warm = publish_round(0)
        asyncio.run(first_result_after(settings, {p.event_id for p in warm}, timeout_s=300))
        recoveries = []
        for round_no in range(1, rounds + 1):
            before = publish_round(100 + round_no)
            stack.down(settings)
            time.sleep(2)  # the broker stays down a moment: the worker must notice and reconnect
            restarted = time.monotonic()
            stack.up(settings)
            after = publish_round(round_no)
            first, _ = asyncio.run(first_result_after(settings, {p.event_id for p in after}, timeout_s=300))
            _, done_before = asyncio.run(
                first_result_after(settings, {p.event_id for p in before}, timeout_s=300)
            )
            recoveries.append(first - restarted)
            print(
                f"round {round_no}: first result {recoveries[-1]:.2f}s after the broker restart; "
                f"{done_before}/{len(before)} tickets published before the restart processed"
            )
            if worker.poll() is not None:
                raise RuntimeError("the worker exited during the broker restart")
        figure("broker_restart_recovery_s", statistics.median(recoveries))
    finally:
        if worker is not None:
            processes.stop(worker.pid)


if __name__ == "__main__":
    main()
