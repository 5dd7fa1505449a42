"""Quality scores into the ClickHouse ``evaluations`` table (migration 0007), and the question asked of
them most: how does this version score against the one before it.

Scores are written directly, not through Kafka: an evaluation run is a batch job that owns its results
and re-running it replaces them (deterministic run id, ReplacingMergeTree).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sinks.clickhouse import ClickHouseClient

EVALUATION_COLUMNS: Final[tuple[str, ...]] = (
    "run_id",
    "dataset",
    "workflow",
    "workflow_version",
    "prompt_version",
    "model",
    "step",
    "metric",
    "label",
    "event_id",
    "value",
    "support",
    "details",
    "evaluated_at",
    "ingested_at",
)


@dataclass(frozen=True)
class Score:
    """One number about quality. ``label`` empty = the whole step; ``event_id`` empty = an aggregate."""

    run_id: str
    dataset: str
    workflow: str
    workflow_version: str
    step: str
    metric: str
    value: float
    support: int
    evaluated_at: datetime
    prompt_version: str = ""
    model: str = ""
    label: str = ""
    event_id: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    def row(self, ingested_at: datetime) -> tuple[Any, ...]:
        return (
            self.run_id,
            self.dataset,
            self.workflow,
            self.workflow_version,
            self.prompt_version,
            self.model,
            self.step,
            self.metric,
            self.label,
            self.event_id,
            float(self.value),
            int(self.support),
            json.dumps(dict(self.details), sort_keys=True, default=str),
            self.evaluated_at,
            ingested_at,
        )


def write_scores(client: ClickHouseClient, scores: Iterable[Score]) -> int:
    now = datetime.now(UTC)
    rows = [s.row(now) for s in scores]
    if rows:
        client.insert("evaluations", rows, EVALUATION_COLUMNS)
    return len(rows)


_LATEST_SQL = """
SELECT step, metric, label, workflow_version,
       argMax(value, evaluated_at) AS value, argMax(support, evaluated_at) AS support,
       max(evaluated_at) AS last_evaluated_at
FROM evaluations FINAL
WHERE dataset = {dataset:String} AND workflow = {workflow:String} AND event_id = ''
GROUP BY step, metric, label, workflow_version
"""


def latest_scores(
    client: ClickHouseClient, dataset: str, workflow: str
) -> dict[tuple[str, str, str, str], float]:
    """The newest aggregate score per (workflow version, step, metric, label) on a dataset: what a
    release gate compares a candidate's scores against."""
    rows = client.query_dicts(_LATEST_SQL, {"dataset": dataset, "workflow": workflow})
    return {(r["workflow_version"], r["step"], r["metric"], r["label"]): float(r["value"]) for r in rows}
