"""Pipeline figures: intent accuracy through the pipeline, end-to-end ticket throughput against raw
embedding throughput of the same model in the same run, and worker RSS growth over 50,000 events.

    python bench/pipeline.py [--rss-events 50000]

Brings up its own broker on a free port with data in a temp dir, trains the intent head on the full
BANKING77 training split, runs a real worker process, and removes everything afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import psutil
from aiokafka import AIOKafkaConsumer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import embedded_stack, figure
from bench.memory_regions import print_growth, resident_by_region
from gateway.local.embedder import Embedder
from gateway.local.training import BANKING77_TEST, BANKING77_TRAIN, train
from streams import envelope as env
from streams import processes, stack
from streams.codec import decode
from streams.config import Settings
from streams.offsets import partitions_of
from streams.publish import Draft, publish, read_rows, ticket_drafts
from streams.topics import TICKET_TRIAGED

PIPELINE_PASSES = 3


class ResultWatcher:
    """Reads ticket.triaged.v1 from the current end, recording intent and arrival per causing event."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.intents: dict[str, str] = {}
        self.arrival: dict[str, float] = {}
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap, enable_auto_commit=False)
        await consumer.start()
        parts = await partitions_of(consumer, [TICKET_TRIAGED])
        consumer.assign(parts)
        for tp, end in (await consumer.end_offsets(parts)).items():
            consumer.seek(tp, end)
        self._consumer = consumer

    async def wait_for(self, ids: set[str], timeout_s: float, on_progress: object = None) -> None:
        assert self._consumer is not None
        deadline = time.monotonic() + timeout_s
        while not ids <= self.intents.keys():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(ids - self.intents.keys())} results missing after {timeout_s}s")
            for records in (await self._consumer.getmany(timeout_ms=200, max_records=5000)).values():
                now = time.monotonic()
                for r in records:
                    cause = env.header_map(r.headers).get("ce_causationid", "")
                    if cause not in self.intents:
                        self.intents[cause] = str(decode(TICKET_TRIAGED, r.value)["intent"])
                        self.arrival[cause] = now
            if callable(on_progress):
                on_progress(len(ids & self.intents.keys()))

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()


def raw_embedding_rate(texts: list[str], repeats: int = 3) -> float:
    embedder = Embedder()
    embedder.embed(texts[:64])
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        embedder.embed(texts)
        rates.append(len(texts) / (time.perf_counter() - t0))
    return statistics.median(rates)


def bulk_drafts(rows: list[dict[str, str]], n: int, prefix: str) -> list[Draft]:
    cycled = [{**rows[i % len(rows)], "ticket_id": f"{prefix}{i:07d}"} for i in range(n)]
    return list(ticket_drafts(cycled, tenant="bench"))


async def pipeline_figures(
    settings: Settings,
    test_rows: list[dict[str, str]],
    pass_rows: list[list[dict[str, str]]],
    warm_rows: list[dict[str, str]],
    rss_events: int,
    worker_pid: int,
    broker_pid: int,
) -> list[float]:
    """Print accuracy and RSS figures; return the end-to-end ticket rate (events/s) of each pass."""
    watcher = ResultWatcher(settings)
    await watcher.start()
    try:
        warm = await publish(settings.kafka_bootstrap, bulk_drafts(warm_rows, len(warm_rows), "W"))
        await watcher.wait_for({p.event_id for p in warm}, timeout_s=300)

        rates = []
        # Where the CPU goes during the passes (the broker shares the two cores with the worker).
        cpu = {name: psutil.Process(pid) for name, pid in (("worker", worker_pid), ("broker", broker_pid))}
        store = vector_store_process(worker_pid)
        if store is not None:
            cpu["vector store"] = store
        cpu_before = {name: sum(p.cpu_times()[:2]) for name, p in cpu.items()}
        for run_no, rows in enumerate(pass_rows):
            # Never the same texts twice: the worker memoises embeddings by text, so a repeated
            # pass would measure the memo, not the model.
            rows = [{**r, "ticket_id": f"P{run_no}-{i:05d}"} for i, r in enumerate(rows)]
            t0 = time.monotonic()
            published = await publish(settings.kafka_bootstrap, list(ticket_drafts(rows, tenant="bench")))
            await watcher.wait_for({p.event_id for p in published}, timeout_s=900)
            elapsed = max(watcher.arrival[p.event_id] for p in published) - t0
            rates.append(len(published) / elapsed)
            print(f"pass {run_no + 1}: {len(published)} tickets in {elapsed:.1f}s = {rates[-1]:.1f}/s")
            if run_no == 0:
                correct = sum(watcher.intents[p.event_id] == p.label for p in published)
                figure("banking77_accuracy", correct / len(published))

        busy = {name: sum(p.cpu_times()[:2]) - cpu_before[name] for name, p in cpu.items()}
        tickets = sum(len(rows) for rows in pass_rows)
        print(
            "CPU per 1,000 tickets over the passes: "
            + ", ".join(f"{name} {1000 * s / tickets:.2f} s" for name, s in busy.items())
        )
        worker = psutil.Process(worker_pid)
        window = min(10_000, rss_events // 5)
        # RSS is sampled all along (each poll for results, ~5 a second). The figure compares the
        # median over the second half of the first window with the median over the second half of
        # the last: both are the worker busy at full speed. The first half of the first window is
        # the ramp (fetch buffers and batches in flight filling up after the idle gap), and a single
        # reading after the last result would catch the worker idle with its buffers drained. The
        # series is printed so the shape can be checked. Region and PSS snapshots (a full smaps
        # read each) are taken at the start of each half-window.
        samples: list[tuple[int, int]] = []
        store_samples: list[tuple[int, int]] = []
        snapshots: dict[str, tuple[int, dict[str, int]]] = {}
        store_snapshots: dict[str, dict[str, int]] = {}
        marks = {"first": window // 2, "last": rss_events - window // 2}

        def sample(done: int) -> None:
            samples.append((done, worker.memory_info().rss))
            if store is not None:
                store_samples.append((done, store.memory_info().rss))
            for name, at in marks.items():
                if name not in snapshots and done >= at:
                    regions = resident_by_region(worker_pid, settings.data_dir)
                    snapshots[name] = (worker.memory_full_info().pss, regions)
                    if store is not None:
                        store_snapshots[name] = resident_by_region(store.pid, settings.data_dir)

        bulk = await publish(settings.kafka_bootstrap, bulk_drafts(test_rows, rss_events, "R"))
        await watcher.wait_for({p.event_id for p in bulk}, timeout_s=3600, on_progress=sample)
        first_rss = [rss for done, rss in samples if marks["first"] <= done < window]
        last_rss = [rss for done, rss in samples if marks["last"] <= done < rss_events]
        rss_first, rss_last = statistics.median(first_rss), statistics.median(last_rss)
        growth = (rss_last - rss_first) / rss_first * 100
        step = max(1, rss_events // 20)
        series: dict[int, int] = {}
        for done, rss in samples:
            series.setdefault(done // step * step, rss)
        shape = ", ".join(f"{done:,} {rss / 2**20:.0f}" for done, rss in series.items())
        print(f"worker RSS (MiB) by events done: {shape}, at the end {samples[-1][1] / 2**20:.0f}")
        print(
            f"worker RSS, median over events {marks['first']:,}-{window:,}: {rss_first / 2**20:.1f} MiB "
            f"({len(first_rss)} samples); over {marks['last']:,}-{rss_events:,}: "
            f"{rss_last / 2**20:.1f} MiB ({len(last_rss)} samples)"
        )
        # Not the figure, which is RSS: PSS counts a resident page once however often it is mapped.
        # qdrant-edge maps its vector files twice, so RSS counts every stored vector twice.
        (pss_first, regions_first), (pss_last, regions_last) = snapshots["first"], snapshots["last"]
        print(
            f"worker PSS at {marks['first']:,} events {pss_first / 2**20:.1f} MiB, at {marks['last']:,} "
            f"{pss_last / 2**20:.1f} MiB (growth {(pss_last - pss_first) / pss_first * 100:.1f} %)"
        )
        print(f"worker RSS by region, at {marks['first']:,} events -> at {marks['last']:,}:")
        print_growth(regions_first, regions_last)
        if store is not None:
            # The embedded vector store runs in a child of the worker (qdrant_edge_isolated): its
            # growth is the stored points, not the worker's, but it is printed so the two can be
            # read together.
            store_first = statistics.median(r for d, r in store_samples if marks["first"] <= d < window)
            store_last = statistics.median(r for d, r in store_samples if marks["last"] <= d < rss_events)
            both_first, both_last = rss_first + store_first, rss_last + store_last
            print(
                f"vector store process RSS: {store_first / 2**20:.1f} -> {store_last / 2**20:.1f} MiB; "
                f"worker + store {both_first / 2**20:.1f} -> {both_last / 2**20:.1f} MiB "
                f"(growth {(both_last - both_first) / both_first * 100:.1f} %)"
            )
            print(f"vector store process RSS by region, {marks['first']:,} -> {marks['last']:,} events:")
            print_growth(store_snapshots["first"], store_snapshots["last"])
        figure("rss_growth_pct", growth)
    finally:
        await watcher.stop()
    return rates


def vector_store_process(worker_pid: int) -> psutil.Process | None:
    """The worker's child that owns the embedded vector store, if it runs one."""
    pid = processes.vector_store_pid(worker_pid)
    return psutil.Process(pid) if pid is not None else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rss-events", type=int, default=50_000)
    args = parser.parse_args()
    with embedded_stack("bench") as settings:
        run_figures(settings, args.rss_events)


def run_figures(settings: Settings, rss_events: int) -> None:
    worker = None
    try:
        report = train(settings.models_dir, settings.intent_model, BANKING77_TRAIN)
        print(f"trained {report.name}@{report.version}: cv {report.cv_scores}")
        test_rows = list(read_rows(BANKING77_TEST))
        train_rows = list(read_rows(BANKING77_TRAIN))
        n = len(test_rows)
        # Pass 1 is the test split (accuracy); passes 2.. are disjoint, same-sized training slices.
        pass_rows = [test_rows] + [train_rows[i * n : (i + 1) * n] for i in range(PIPELINE_PASSES - 1)]
        # Raw rate on each pass's own texts (lengths differ: 54, 57, 62 chars mean), before the
        # worker starts, so each ratio compares the same texts side by side.
        raw_rates = [raw_embedding_rate([r["text"] for r in rows]) for rows in pass_rows]
        for i, raw in enumerate(raw_rates):
            print(f"pass {i + 1} texts: raw batched embedding throughput {raw:.1f}/s (median of 3)")
        worker = processes.spawn(settings, "worker", ["worker"])
        rates = asyncio.run(
            pipeline_figures(
                settings,
                test_rows,
                pass_rows,
                train_rows[-128:],
                rss_events,
                worker.pid,
                stack.broker_pid(settings) or 0,
            )
        )
        ratios = [rate / raw for rate, raw in zip(rates, raw_rates, strict=True)]
        print("per-pass ratios " + ", ".join(f"{r:.3f}" for r in ratios))
        figure("ticket_throughput_ratio", statistics.median(ratios))
    finally:
        if worker is not None:
            processes.stop(worker.pid)


if __name__ == "__main__":
    main()
