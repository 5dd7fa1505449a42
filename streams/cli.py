"""The ``riverbed`` command line."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from streams import processes, stack
from streams.config import Settings, get_settings
from streams.kafka_compat import install_empty_fetch_floor
from streams.logs import configure_logging

app = typer.Typer(
    help="Riverbed: Kafka events in, AI workflows through one gateway, results and traces out.",
    no_args_is_help=True,
)
stack_app = typer.Typer(
    help="The local embedded stack (noida-db broker, chdb, qdrant-edge).", no_args_is_help=True
)
app.add_typer(stack_app, name="stack")
console = Console()


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
    table.add_row("topics", ", ".join(t for t in status.topics if not t.startswith("_")) or "-")
    table.add_row("clickhouse", settings.effective_clickhouse_dsn)
    table.add_row("vectors", settings.qdrant_url or str(settings.qdrant_path))
    console.print(table)
    raise typer.Exit(0 if status.running else 1)


@app.command()
def worker() -> None:
    """Run the Faust worker (all workflows) in the foreground; SIGTERM stops it cleanly."""
    import faust

    from gateway.local.artifacts import latest_version
    from streams.app import create_app

    settings = _settings()
    if latest_version(settings.models_dir, settings.intent_model) is None:
        console.print(
            f"[red]no '{settings.intent_model}' classifier under {settings.models_dir}[/]: "
            "run `riverbed train` first"
        )
        raise typer.Exit(2)
    faust_app = create_app(settings)
    faust.Worker(faust_app, loglevel=settings.log_level.lower(), quiet=True).execute_from_commandline()


@app.command()
def sink() -> None:
    """Run the ClickHouse sink (traces and results) in the foreground."""
    import signal

    from sinks.clickhouse import connect, migrate
    from sinks.service import ClickHouseSink

    settings = _settings()
    client = connect(settings.effective_clickhouse_dsn, settings.clickhouse_database)
    migrate(client)
    service = ClickHouseSink(settings, client)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, service.stop)
        await service.run()

    try:
        asyncio.run(main())
    finally:
        client.close()


@app.command("migrate")
def migrate_cmd() -> None:
    """Apply pending ClickHouse migrations from infra/clickhouse/migrations."""
    from sinks.clickhouse import connect, migrate

    settings = _settings()
    client = connect(settings.effective_clickhouse_dsn, settings.clickhouse_database)
    try:
        applied = migrate(client)
    finally:
        client.close()
    console.print(f"applied: {', '.join(applied) or 'nothing (up to date)'}")


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


if __name__ == "__main__":
    app()
