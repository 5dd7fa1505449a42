"""``riverbed shadow``: real traffic through a candidate version, side by side with production.

The events of a time range are copied (bytes and headers, plus ``x-riverbed-replayed-from``) to the
input's shadow topic; a shadow worker (settings ``shadow``) runs them under the candidate artifact and
writes to the shadow result topic only. It searches production's vector store but never writes to it,
sends nothing to review, retry or DLQ topics, and its workflow version ends in ``+shadow``, so its
result and trace ids cannot collide with production's. Its traces are real model calls and go to
ClickHouse like any other (cost is cost), tagged by that version.

The comparison is per event: production's answer from ClickHouse ``results``, the candidate's from
the shadow topic; agreement, the label flips, and cost and latency per step from ``traces``. The
agreement is stored in ``evaluations`` (dataset ``shadow:<topic>``), per event and overall.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition

from sinks.clickhouse import ClickHouseClient
from sinks.evaluations import Score, write_scores
from sinks.service import ClickHouseSink, run_until_caught_up
from streams import envelope as env
from streams import processes, stack
from streams.codec import decode
from streams.config import Settings
from streams.offsets import end_offsets, reader_from
from streams.ops import Selection, commit_offsets, republish, select
from streams.topics import TICKET_CREATED, TICKET_TRIAGED, shadow_topic

SHADOW_WORKER = "shadow-worker"


class ShadowError(RuntimeError):
    """The shadow run cannot start; the message says what to do."""


@dataclass
class ShadowReport:
    candidate_version: str
    production_versions: list[str]
    events: int
    compared: int
    agreed: int
    missing: int
    seconds: float
    flips: list[tuple[str, str, int]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    """Per step and side (production / shadow): calls, cost, p50 and p95 latency."""
    agreed_by_event: dict[str, bool] = field(default_factory=dict)

    @property
    def agreement(self) -> float:
        return self.agreed / self.compared if self.compared else 0.0


def run_shadow(
    settings: Settings,
    client: ClickHouseClient,
    selection: Selection,
    model: str | None = None,
    timeout_s: float = 3600.0,
) -> ShadowReport:
    stack.up(settings)
    if not settings.qdrant_url and processes.running_pid(settings, "worker") is not None:
        raise ShadowError(
            "the worker holds the embedded vector store: stop it (riverbed stack down) for the shadow run, "
            "or point both at a Qdrant server (qdrant_url)"
        )
    records = asyncio.run(select(settings.kafka_bootstrap, TICKET_CREATED, selection))
    if not records:
        raise ShadowError(f"no {TICKET_CREATED} events in the selected range")
    causes = {r.event_id for r in records if r.event_id}
    shadow = settings.model_copy(
        update={
            "shadow": True,
            "app_id": f"{settings.app_id}-shadow",
            "intent_model": model or settings.intent_model,
        }
    )
    source = shadow_topic(TICKET_CREATED)
    bootstrap = settings.kafka_bootstrap
    # a fresh group would start at the topic's beginning (earlier shadow runs): start at its end
    asyncio.run(commit_offsets(bootstrap, shadow.app_id, asyncio.run(end_offsets(bootstrap, [source]))))
    result_start = asyncio.run(end_offsets(bootstrap, [shadow_topic(TICKET_TRIAGED)]))
    worker = processes.spawn(shadow, SHADOW_WORKER, ["worker"])
    try:
        started = time.monotonic()
        asyncio.run(republish(bootstrap, records, lambda _: source))
        answers = asyncio.run(_collect(bootstrap, result_start, causes, timeout_s))
        seconds = time.monotonic() - started
    finally:
        processes.stop(worker.pid)
    _drain_traces(settings, client)
    report = _compare(client, causes, answers, seconds)
    _store_agreement(client, report)
    return report


async def _collect(
    bootstrap: str, start: dict[TopicPartition, int], causes: set[str], timeout_s: float
) -> dict[str, dict[str, Any]]:
    answers: dict[str, dict[str, Any]] = {}
    consumer = await reader_from(bootstrap, start)
    deadline = time.monotonic() + timeout_s
    try:
        while len(answers) < len(causes) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for record in records:
                    cause = env.header_map(record.headers).get("ce_causationid", "")
                    if cause in causes:
                        answers[cause] = decode(TICKET_TRIAGED, record.value)
    finally:
        await consumer.stop()
    return answers


def _drain_traces(settings: Settings, client: ClickHouseClient, timeout_s: float = 300.0) -> None:
    """Bring the traces and results of both sides into ClickHouse (the embedded stack runs no sink)."""
    if not asyncio.run(run_until_caught_up(ClickHouseSink(settings, client), timeout_s)):
        raise ShadowError(f"the sink did not catch up within {timeout_s:.0f}s; compare again later")


def _compare(
    client: ClickHouseClient, causes: set[str], answers: dict[str, dict[str, Any]], seconds: float
) -> ShadowReport:
    ids = sorted(causes)
    production = {
        r["causation_id"]: r
        for r in client.query_dicts(
            "SELECT causation_id, labels[1] AS label, workflow_version FROM results FINAL "
            "WHERE workflow = 'ticket' AND causation_id IN {ids:Array(String)}",
            {"ids": ids},
        )
    }
    both = [c for c in ids if c in production and c in answers]
    flips = Counter(
        (production[c]["label"], answers[c]["intent"])
        for c in both
        if production[c]["label"] != answers[c]["intent"]
    )
    steps = client.query_dicts(
        "SELECT step, if(endsWith(workflow_version, '+shadow'), 'shadow', 'production') AS side, "
        "count() AS calls, sum(cost_usd) AS total_cost_usd, "
        "round(quantile(0.5)(latency_ms), 2) AS p50_ms, round(quantile(0.95)(latency_ms), 2) AS p95_ms "
        "FROM traces FINAL WHERE event_id IN {ids:Array(String)} AND status = 'ok' "
        "GROUP BY step, side ORDER BY step, side",
        {"ids": ids},
    )
    candidate = Counter(str(a["workflow_version"]) for a in answers.values()).most_common(1)
    return ShadowReport(
        candidate_version=candidate[0][0] if candidate else "unknown",
        production_versions=sorted({str(p["workflow_version"]) for p in production.values()}),
        events=len(ids),
        compared=len(both),
        agreed=len(both) - sum(flips.values()),
        missing=len(ids) - len(answers),
        seconds=seconds,
        flips=[(a, b, n) for (a, b), n in flips.most_common(10)],
        steps=steps,
        agreed_by_event={c: production[c]["label"] == answers[c]["intent"] for c in both},
    )


def _store_agreement(client: ClickHouseClient, report: ShadowReport) -> int:
    """Overall and per-event agreement into ``evaluations`` (dataset ``shadow:ticket.created.v1``)."""
    now = datetime.now(UTC)
    run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"riverbed:shadow:{report.candidate_version}:{now}"))

    def score(value: float, support: int, event_id: str = "", details: dict[str, Any] | None = None) -> Score:
        return Score(
            run_id=run_id,
            dataset=f"shadow:{TICKET_CREATED}",
            workflow="ticket",
            workflow_version=report.candidate_version,
            step="classify",
            metric="agreement",
            value=value,
            support=support,
            evaluated_at=now,
            event_id=event_id,
            details=details or {},
        )

    overall = score(report.agreement, report.compared, details={"flips": report.flips})
    per_event = [score(float(ok), 1, event_id=eid) for eid, ok in report.agreed_by_event.items()]
    return write_scores(client, [overall, *per_event])
