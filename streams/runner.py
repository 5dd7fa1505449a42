"""``riverbed run``: the main job. Stack up, worker up, publish BANKING77's test split and the
document corpus, watch every event come back as exactly one result, then print what happened.

It is the smoke test a new user runs and the demo an operator shows, so it measures from the
outside: it publishes like an upstream system and reads results like a downstream one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gateway.local.artifacts import latest_version
from gateway.local.training import BANKING77_TEST, BANKING77_TRAIN, train
from sinks.clickhouse import ClickHouseClient, connect, migrate
from sinks.retention import apply_retention, retention_of
from sinks.service import ClickHouseSink
from streams import envelope as env
from streams import processes, stack
from streams.codec import decode
from streams.config import PROJECT_ROOT, Settings
from streams.offsets import end_offsets, reader_from
from streams.publish import Published, document_drafts_from_dir, publish, read_rows, ticket_drafts
from streams.topics import (
    DOCUMENT_UPLOADED,
    INPUT_TOPICS,
    RESULT_TOPICS,
    TICKET_CREATED,
    TICKET_TRIAGED,
    dlq_topic,
)

CORPUS_DIR = PROJECT_ROOT / "infra" / "datasets" / "sotu" / "texts"
DEMO_TENANT = "acme-bank"


@dataclass
class RunTally:
    published: dict[str, Published]
    results: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    intents: dict[str, str] = field(default_factory=dict)
    dead: dict[str, str] = field(default_factory=dict)
    first_publish: float = 0.0
    last_result: float = 0.0

    @property
    def finished(self) -> int:
        return len(self.results.keys() | self.dead.keys())

    def complete(self) -> bool:
        return self.finished >= len(self.published)


@dataclass(frozen=True)
class RunOptions:
    keep: bool = False
    tickets_csv: Path = BANKING77_TEST
    ticket_limit: int | None = None
    corpus_dir: Path = CORPUS_DIR
    timeout_s: float = 1800.0


def ensure_intent_model(settings: Settings, console: Console) -> str:
    version = latest_version(settings.models_dir, settings.intent_model)
    if version is not None:
        return version
    console.print(f"[bold]Training[/] {settings.intent_model} on {BANKING77_TRAIN.name} (first run only)…")
    report = train(settings.models_dir, settings.intent_model, BANKING77_TRAIN)
    console.print(f"  {report.rows} rows, {report.labels} labels, cv {report.cv_scores} → {report.path}")
    return str(report.version)


def run_main(settings: Settings, options: RunOptions, console: Console | None = None) -> int:
    console = console or Console()
    console.print(f"[bold]Stack[/] up at {settings.kafka_bootstrap} (data in {settings.data_dir})")
    stack.up(settings)
    ensure_intent_model(settings, console)
    client = connect(settings.effective_clickhouse_dsn, settings.clickhouse_database)
    try:
        migrate(client)
        apply_retention(client, retention_of(settings))
        return asyncio.run(_run(settings, options, client, console))
    finally:
        client.close()
        if options.keep:
            processes.spawn(settings, "sink", ["sink"])
            console.print(
                "[bold]--keep[/]: broker, worker and sink left running; `riverbed stack down` stops them."
            )
        else:
            processes.stop_named(settings, "worker")
            stack.down(settings)


async def _run(settings: Settings, options: RunOptions, client: ClickHouseClient, console: Console) -> int:
    worker_pid = processes.running_pid(settings, "worker")
    if worker_pid is None:
        worker_pid = processes.spawn(settings, "worker", ["worker"]).pid
    sink = ClickHouseSink(settings, client)
    sink_task = asyncio.create_task(sink.run())
    try:
        start_offsets = await end_offsets(
            settings.kafka_bootstrap, [*RESULT_TOPICS, *(dlq_topic(t) for t in INPUT_TOPICS)]
        )
        drafts = [
            *ticket_drafts(read_rows(options.tickets_csv), tenant=DEMO_TENANT),
            *document_drafts_from_dir(options.corpus_dir, tenant=DEMO_TENANT),
        ]
        if options.ticket_limit is not None:
            tickets = [d for d in drafts if d.topic == TICKET_CREATED][: options.ticket_limit]
            drafts = tickets + [d for d in drafts if d.topic == DOCUMENT_UPLOADED]
        tally = RunTally(published={})
        tally.first_publish = time.monotonic()
        run_started = time.time()
        published = await publish(settings.kafka_bootstrap, drafts, source="urn:riverbed:run")
        tally.published = {p.event_id: p for p in published}
        await _collect(settings, start_offsets, tally, options.timeout_s, console, worker_pid)
        await _drain_sink(sink, timeout_s=120)
        _print_summary(console, settings, client, tally, run_started)
        return 0 if _exactly_one_each(tally) else 1
    finally:
        sink.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sink_task, timeout=60)


async def _collect(
    settings: Settings,
    start: dict[TopicPartition, int],
    tally: RunTally,
    timeout_s: float,
    console: Console,
    worker_pid: int,
) -> None:
    """Read result and DLQ topics from where they ended before we published, until all are back."""
    consumer = await reader_from(settings.kafka_bootstrap, start)
    deadline = time.monotonic() + timeout_s
    columns = (
        TextColumn("[bold]events"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            bar = progress.add_task("events", total=len(tally.published), rate="")
            while not tally.complete() and time.monotonic() < deadline:
                if not processes.alive(worker_pid):
                    console.print(f"[red]the worker exited[/]; see {settings.data_dir / 'worker.log'}")
                    return
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for records in batches.values():
                    for record in records:
                        _tally_record(record, tally)
                elapsed = max(time.monotonic() - tally.first_publish, 1e-6)
                progress.update(bar, completed=tally.finished, rate=f"{tally.finished / elapsed:,.0f} ev/s")
    finally:
        await consumer.stop()


def _tally_record(record: Any, tally: RunTally) -> None:
    headers = env.header_map(record.headers)
    if record.topic in RESULT_TOPICS:
        cause = headers.get("ce_causationid", "")
        if cause in tally.published:
            tally.results[cause].add(headers.get("ce_id", ""))
            tally.last_result = time.monotonic()
            if record.topic == TICKET_TRIAGED:
                tally.intents[cause] = str(decode(TICKET_TRIAGED, record.value)["intent"])
    else:
        cause = headers.get("ce_id", "")
        if cause in tally.published:
            tally.dead[cause] = (
                f"{headers.get('x-riverbed-step')}: {headers.get('x-riverbed-error-message', '')}"
            )


async def _drain_sink(sink: ClickHouseSink, timeout_s: float) -> None:
    """Wait until the sink has consumed and inserted every trace and result produced so far."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await sink.lag() == 0:
            await sink.flush()
            return
        await asyncio.sleep(0.2)


def _exactly_one_each(tally: RunTally) -> bool:
    return not tally.dead and all(len(tally.results.get(eid, ())) == 1 for eid in tally.published)


def _print_summary(
    console: Console, settings: Settings, client: ClickHouseClient, tally: RunTally, run_started: float
) -> None:
    by_topic: dict[str, list[str]] = defaultdict(list)
    for eid, p in tally.published.items():
        by_topic[p.topic].append(eid)
    seconds = max(tally.last_result - tally.first_publish, 1e-6)
    table = Table(title="riverbed run", show_header=True)
    table.add_column("what")
    table.add_column("value", justify="right")
    for topic, ids in sorted(by_topic.items()):
        done = sum(1 for i in ids if len(tally.results.get(i, ())) == 1)
        table.add_row(f"{topic} in → results out", f"{len(ids):,} → {done:,}")
    table.add_row("dead-lettered", f"{len(tally.dead):,}")
    table.add_row("events/s (publish → last result)", f"{len(tally.published) / seconds:,.1f}")
    labelled = [(eid, p.label) for eid, p in tally.published.items() if p.label and eid in tally.intents]
    if labelled:
        correct = sum(1 for eid, label in labelled if tally.intents[eid] == label)
        table.add_row(
            "ticket intent accuracy", f"{correct / len(labelled):.4f} ({correct:,}/{len(labelled):,})"
        )
    since = int(run_started) - 1
    for table_name, stamp in (("traces", "started_at"), ("results", "processed_at")):
        total = client.query_scalar(f"SELECT count() FROM {table_name} FINAL")
        this_run = client.query_scalar(
            f"SELECT count() FROM {table_name} FINAL WHERE {stamp} >= fromUnixTimestamp({since})"
        )
        table.add_row(
            f"ClickHouse {settings.clickhouse_database}.{table_name} rows (this run / all)",
            f"{this_run:,} / {total:,}",
        )
    console.print(table)
    steps = Table(title="latency per step (ms, this run)", show_header=True)
    for col in ("workflow", "step", "calls", "p50", "p95"):
        steps.add_column(col, justify="right" if col in {"calls", "p50", "p95"} else "left")
    for workflow, step, calls, p50, p95 in client.query_rows(
        "SELECT workflow, step, count(), quantile(0.5)(latency_ms), quantile(0.95)(latency_ms) "
        f"FROM traces FINAL WHERE started_at >= fromUnixTimestamp({since}) "
        "GROUP BY workflow, step ORDER BY workflow, min(started_at)"
    ):
        steps.add_row(str(workflow), str(step), f"{calls:,}", f"{p50:.1f}", f"{p95:.1f}")
    console.print(steps)
    for eid, reason in list(tally.dead.items())[:10]:
        console.print(f"[red]dead letter[/] {tally.published[eid].key}: {reason}")
    console.print(
        f"Data lives in {settings.data_dir}: broker {settings.kafka_dir}, ClickHouse "
        f"{settings.effective_clickhouse_dsn}, vectors {settings.qdrant_url or settings.qdrant_path}"
    )
