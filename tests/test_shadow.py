"""`riverbed shadow`: production tickets replayed through a weak candidate artifact into shadow topics.
The comparison must find the candidate's label flips, cost and latency on both sides, store the
agreement, and leave every production topic untouched. Real broker, worker processes and chdb."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from gateway.local.training import BANKING77_TRAIN, train
from sinks.clickhouse import connect
from sinks.vectors.base import VectorPoint
from sinks.vectors.readonly import ReadOnlyVectorStore
from streams import processes
from streams.config import PROJECT_ROOT, Settings
from streams.offsets import end_offsets
from streams.ops import commit_offsets
from streams.publish import publish, ticket_drafts
from streams.topics import TICKET_CREATED, TICKET_REVIEW, TICKET_TRIAGED, dlq_topic, retry_topic, shadow_topic
from tests.conftest import banking77_train_subset, cli, in_subprocess, run, wait_until
from tests.test_processed import results_by_cause

TICKETS = 60
PRODUCTION_TOPICS = [TICKET_TRIAGED, TICKET_REVIEW, dlq_topic(TICKET_CREATED), retry_topic(TICKET_CREATED)]


def test_read_only_store_searches_but_never_writes() -> None:
    calls: list[str] = []

    class Inner:
        def upsert(self, points: object) -> None:
            calls.append("upsert")

    store = ReadOnlyVectorStore(Inner())  # type: ignore[arg-type]
    payload = {"tenant_id": "t", "kind": "ticket", "source_id": "s", "text": "x"}
    store.upsert([VectorPoint(id="00000000-0000-0000-0000-000000000001", vector=[1.0], payload=payload)])
    assert calls == [] and store.withheld == 1


def count_shadow_scores() -> None:
    """Run in a subprocess: chdb lets one process own a data path."""
    settings = Settings()
    client = connect(settings.effective_clickhouse_dsn, settings.clickhouse_database)
    try:
        rows = client.query_rows(
            "SELECT event_id = '' AS overall, count() FROM evaluations FINAL "
            "WHERE dataset = 'shadow:ticket.created.v1' GROUP BY overall ORDER BY overall"
        )
        doc = (PROJECT_ROOT / "docs/evaluation.md").read_text()
        (disagreements,) = [q for q in re.findall(r"```sql\n(.*?)```", doc, re.S) if "shadow:" in q]
        assert client.query_rows(disagreements), "the documented query finds no disagreement"
        print(dict(rows))
    finally:
        client.close()


@pytest.mark.slow
def test_shadow_run_compares_a_candidate_without_touching_production(
    broker: Settings, trained_models: Path, tmp_path: Path
) -> None:
    settings = broker.model_copy(update={"app_id": "riverbed-shadow-prod"})
    bootstrap = settings.kafka_bootstrap
    inputs = [TICKET_CREATED, retry_topic(TICKET_CREATED)]
    run(commit_offsets(bootstrap, settings.app_id, run(end_offsets(bootstrap, inputs))))
    result_start = run(end_offsets(bootstrap, [TICKET_TRIAGED]))
    with BANKING77_TRAIN.parent.joinpath("test.csv").open(newline="") as fh:
        rows = [r for i, r in enumerate(csv.DictReader(fh)) if i % 51 == 0][:TICKETS]
    worker = processes.spawn(settings, "shadow-prod-worker", ["worker"], log_path=tmp_path / "prod.log")
    try:
        published = run(publish(bootstrap, list(ticket_drafts(rows, tenant="shadow-co", id_prefix="SH"))))
        want = {p.event_id for p in published}
        wait_until(
            lambda: set(run(results_by_cause(settings, result_start))) >= want, 180, "production results"
        )
    finally:
        assert processes.stop(worker.pid, timeout_s=30)

    weak_data = banking77_train_subset(tmp_path / "weak.csv", every=40)
    candidate = train(settings.models_dir, "shadow-candidate", weak_data)

    before = run(end_offsets(bootstrap, PRODUCTION_TOPICS))
    shadow_before = run(end_offsets(bootstrap, [shadow_topic(TICKET_TRIAGED)]))
    ids = [arg for eid in sorted(want) for arg in ("--event-id", eid)]
    shadowed = cli(
        settings, "shadow", "--model", f"shadow-candidate@{candidate.version}", *ids, timeout_s=600
    )
    assert shadowed.returncode == 0, shadowed.stdout + shadowed.stderr
    out = " ".join(shadowed.stdout.split())
    assert "ticket-1+shadow-candidate@v1+shadow vs ticket-1+banking77-intent@v1" in out
    assert f"{TICKETS} events" in out and f"{TICKETS} compared" in out and "0 without a shadow result" in out
    agreement = float(out.split("agreement ")[1].split(",")[0])
    assert agreement < 0.95  # a head trained on 1/40 of the data disagrees with production somewhere
    assert (
        "Label flips" in shadowed.stdout and "production" in shadowed.stdout and "shadow" in shadowed.stdout
    )

    assert run(end_offsets(bootstrap, PRODUCTION_TOPICS)) == before, "a shadow run wrote to production topics"
    shadow_after = run(end_offsets(bootstrap, [shadow_topic(TICKET_TRIAGED)]))
    assert sum(shadow_after.values()) - sum(shadow_before.values()) == TICKETS

    stored = in_subprocess(settings, "tests.test_shadow", "count_shadow_scores")
    assert stored.strip() == f"{{0: {TICKETS}, 1: 1}}"
