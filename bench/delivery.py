"""Delivery figures: how long the pipeline takes to process events again after a broker restart,
and that nothing published before the restart is lost.

    python bench/delivery.py [--rounds 3]

Brings up its own broker on a free port with data in a temp dir, trains a small intent head, runs a
real worker, then per round: stops the broker (SIGTERM by PID), starts it again on the same data
dir, publishes fresh tickets the moment it answers metadata, and times until the first of them
comes back as a result. Prints the median as ``broker_restart_recovery_s``.

Not measured here yet: ``concurrency_efficiency`` needs a provider with injectable latency (the
HTTP providers of the gateway issue); the local models have none to hide.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import statistics
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import embedded_stack, figure
from gateway.local.training import BANKING77_TEST, BANKING77_TRAIN, train
from streams import envelope as env
from streams import processes, stack
from streams.config import Settings
from streams.offsets import partitions_of
from streams.publish import Published, publish, read_rows, ticket_drafts
from streams.topics import TICKET_TRIAGED

TICKETS_PER_ROUND = 200


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
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with embedded_stack("delivery") as settings:
        run_rounds(settings, args.rounds)


def run_rounds(settings: Settings, rounds: int) -> None:
    worker = None
    try:
        subset = settings.data_dir / "train-subset.csv"
        with BANKING77_TRAIN.open(newline="", encoding="utf-8") as src, subset.open("w", newline="") as dst:
            rows = list(csv.DictReader(src))[::5]
            writer = csv.DictWriter(dst, fieldnames=["text", "category"])
            writer.writeheader()
            writer.writerows({"text": r["text"], "category": r["category"]} for r in rows)
        train(settings.models_dir, settings.intent_model, subset)
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
