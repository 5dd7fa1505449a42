"""Evaluation figures: intent accuracy and calibration on BANKING77's official test split, measured
the way `riverbed eval` measures them — every ticket published as an event through a real worker and
read back as a result — on a broker and data dir of the benchmark's own.

    python bench/evaluation.py [--suite infra/evals/banking77.toml] [--shadow-events 10000]
                               [--only suite|shadow]

Prints every step-level score of the suite, then ``banking77_accuracy`` (target ≥ 0.937) and
``intent_ece`` (target ≤ 0.05).

``shadow_time_ratio`` (target ≤ 2): a production worker processes N tickets (BANKING77 test texts
cycled, unique ids) and the time from publishing to the last result is taken; then `riverbed shadow`'s
code path replays that time range through a candidate artifact (the same training data, a new
version) and the time from the start of the replay to the last shadow result is taken, the shadow
worker's start-up included. The figure is shadow ÷ original.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import embedded_stack, figure
from bench.delivery import result_times
from gateway.local.training import BANKING77_TEST, BANKING77_TRAIN, train
from sinks.clickhouse import connect, migrate
from streams import processes
from streams.config import PROJECT_ROOT
from streams.evaluate import Suite, load_suite, run_suite
from streams.offsets import end_offsets
from streams.ops import Selection
from streams.publish import publish, read_rows, ticket_drafts
from streams.shadow import run_shadow
from streams.topics import TICKET_TRIAGED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--suite", type=Path, default=PROJECT_ROOT / "infra/evals/banking77.toml")
    parser.add_argument("--shadow-events", type=int, default=10_000)
    parser.add_argument("--only", choices=["suite", "shadow"])
    args = parser.parse_args()
    if args.only in (None, "suite"):
        suite_figures(load_suite(args.suite))
    if args.only in (None, "shadow"):
        shadow_figure(args.shadow_events)


def shadow_figure(events: int) -> None:
    with embedded_stack("shadow") as settings:
        train(settings.models_dir, settings.intent_model, BANKING77_TRAIN)
        candidate = train(settings.models_dir, "candidate", BANKING77_TRAIN)
        rows = list(read_rows(BANKING77_TEST))
        tickets = [{**rows[i % len(rows)], "ticket_id": f"S{i:06d}"} for i in range(events)]
        since = datetime.now(UTC) - timedelta(seconds=1)
        start = asyncio.run(end_offsets(settings.kafka_bootstrap, [TICKET_TRIAGED]))
        worker = processes.spawn(settings, "worker", ["worker"])
        try:
            began = time.monotonic()
            published = asyncio.run(
                publish(settings.kafka_bootstrap, list(ticket_drafts(tickets, tenant="s")))
            )
            asyncio.run(result_times(settings, start, {p.event_id for p in published}, timeout_s=3600))
            original = time.monotonic() - began
        finally:
            processes.stop(worker.pid)
        print(f"original: {events:,} tickets in {original:.1f}s ({events / original:.1f}/s)")
        client = connect(settings.effective_clickhouse_dsn, settings.clickhouse_database)
        try:
            migrate(client)
            report = run_shadow(settings, client, Selection(since=since), f"candidate@{candidate.version}")
        finally:
            client.close()
        print(
            f"shadow: {report.events:,} tickets in {report.seconds:.1f}s "
            f"({report.events / report.seconds:.1f}/s), "
            f"{report.compared:,} compared, agreement {report.agreement:.4f}, {report.missing} missing"
        )
        figure("shadow_time_ratio", report.seconds / original)


def suite_figures(suite: Suite) -> None:
    with embedded_stack("evaluation") as settings:
        client = connect(settings.effective_clickhouse_dsn, settings.clickhouse_database)
        try:
            migrate(client)
            started = time.monotonic()
            report = run_suite(settings, suite, client)
            print(
                f"{suite.name}: {report.completed:,}/{report.published:,} events under "
                f"{report.workflow_version} in {time.monotonic() - started:.1f}s (training included)"
            )
        finally:
            client.close()
    scores = {(v.score.step, v.score.metric): v.score.value for v in report.verdicts}
    for (step, metric), value in sorted(scores.items()):
        print(f"{step}.{metric} = {value:.4f}")
    figure("banking77_accuracy", scores[("classify", "accuracy")])
    figure("intent_ece", scores[("classify", "ece")])


if __name__ == "__main__":
    main()
