"""``riverbed eval``: a labelled dataset through the real pipeline, scored, stored, and gated.

A suite file (TOML, ``infra/evals/*.toml``) says which file to read, which columns are the input and
which hold the expected outputs of which step, which classifier artifact the run uses (a name, or
``name@vN`` for a candidate), and the floors and the allowed regression margin. The command starts
its own worker with that artifact, publishes every row as a ``ticket.created.v1`` event like an
upstream system would, reads the results like a downstream service, scores each labelled step
(streams/scoring.py), writes the scores to ClickHouse ``evaluations`` and compares them with the
floors and with the newest scores of the previous workflow version. Exit code 1 means "do not ship".
"""

from __future__ import annotations

import asyncio
import json
import time
import tomllib
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.local.artifacts import resolve
from gateway.local.training import train
from sinks.clickhouse import ClickHouseClient
from sinks.evaluations import Score, write_scores
from streams import envelope as env
from streams import processes, stack
from streams.codec import decode
from streams.config import PROJECT_ROOT, Settings
from streams.offsets import end_offsets, reader_from
from streams.publish import publish, read_rows, ticket_drafts
from streams.scoring import Metric, classification, extraction, summaries
from streams.topics import TICKET_CREATED, TICKET_TRIAGED, dlq_topic

INSTALLED_PREFIX = "installed:"
LOWER_IS_BETTER = frozenset({"ece", "invented_number_rate"})
EVAL_WORKER = "eval-worker"


class SuiteError(ValueError):
    """A suite file that cannot be run; the message names the file and the problem."""


class Expected(BaseModel):
    model_config = ConfigDict(extra="forbid")
    classify: str | None = Field(default=None, description="Column with the expected intent/label.")
    extract: str | None = Field(default=None, description='Column with JSON [{"label", "text"}, …].')


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    workflow: str = Field(default="ticket", pattern="^ticket$")
    data: Path
    text_column: str = "text"
    every: int = Field(default=1, ge=1, description="Take every n-th row (a stratified-enough sample).")
    limit: int | None = Field(default=None, ge=1)
    intent_model: str = "banking77-intent"
    train_data: Path | None = Field(default=None, description="Trained from this if the artifact is missing.")
    train_label_column: str = "category"
    expected: Expected = Expected()
    entity_labels: dict[str, str] = Field(
        default_factory=dict,
        description='Dataset entity label -> pipeline label (e.g. PER = "PERSON"); when set, only '
        "these types are scored on both sides, so a type one side does not know is neither missed "
        "nor invented.",
    )
    floors: dict[str, float] = Field(default_factory=dict, description='"step.metric" = lowest allowed.')
    ceilings: dict[str, float] = Field(default_factory=dict, description='"step.metric" = highest allowed.')
    margin: float = Field(
        default=0.01, ge=0, description="Largest allowed worsening vs the previous version."
    )
    timeout_s: float = 1200.0


def load_suite(path: Path, datasets_dir: Path | None = None) -> Suite:
    """Relative paths are from the project root; ``installed:NAME/FILE`` is a file of a dataset that
    ``riverbed datasets install NAME`` put under ``datasets_dir``."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        suite = Suite.model_validate(raw)
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise SuiteError(f"{path}: {exc}") from exc
    installed_root = datasets_dir or Settings.model_fields["datasets_dir"].default
    fix = {
        field: _suite_path(value, installed_root)
        for field, value in (("data", suite.data), ("train_data", suite.train_data))
        if value is not None
    }
    return suite.model_copy(update=fix)


def _suite_path(value: Path, datasets_dir: Path) -> Path:
    text = str(value)
    if text.startswith(INSTALLED_PREFIX):
        return datasets_dir / text.removeprefix(INSTALLED_PREFIX)
    return value if value.is_absolute() else PROJECT_ROOT / value


def check_data(suite: Suite, datasets_dir: Path) -> None:
    for path in (suite.data, suite.train_data):
        if path is None or path.exists():
            continue
        if path.is_relative_to(datasets_dir):
            name = path.relative_to(datasets_dir).parts[0]
            raise SuiteError(f"{path} is missing: install it with `riverbed datasets install {name}`")
        raise SuiteError(f"{path} is missing")


@dataclass(frozen=True)
class Verdict:
    score: Score
    bound: str
    previous: float | None
    failed: bool


@dataclass(frozen=True)
class EvalReport:
    suite: Suite
    workflow_version: str
    published: int
    completed: int
    verdicts: list[Verdict]
    previous_version: str | None

    @property
    def passed(self) -> bool:
        return not any(v.failed for v in self.verdicts)


def run_suite(
    settings: Settings, suite: Suite, client: ClickHouseClient, limit: int | None = None
) -> EvalReport:
    """Stack up, run the suite through a worker of its own, score, store, judge."""
    check_data(suite, settings.datasets_dir)
    stack.up(settings)
    if processes.running_pid(settings, "worker") is not None:
        raise SuiteError(
            "a worker is running: stop it (riverbed stack down) so the suite runs under its own model"
        )
    _ensure_artifact(settings, suite)
    rows = [r for i, r in enumerate(read_rows(suite.data)) if i % suite.every == 0][: limit or suite.limit]
    if not rows:
        raise SuiteError(f"{suite.data}: no rows")
    worker_settings = settings.model_copy(update={"intent_model": suite.intent_model})
    worker = processes.spawn(worker_settings, EVAL_WORKER, ["worker"])
    started = datetime.now(UTC)
    try:
        results, dead, published = asyncio.run(_publish_and_collect(settings, suite, rows))
    finally:
        processes.stop(worker.pid)
    version = Counter(r["workflow_version"] for r in results.values()).most_common(1)
    workflow_version = version[0][0] if version else "unknown"
    metrics = score(suite, published, results)
    metrics.append(Metric("pipeline", "completed", len(results) / len(published), len(published)))
    run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"riverbed:eval:{suite.name}:{workflow_version}:{started}"))
    scores = [
        Score(
            run_id=run_id,
            dataset=suite.name,
            workflow=suite.workflow,
            workflow_version=workflow_version,
            prompt_version=workflow_version.split("+", 1)[-1],
            model=suite.intent_model,
            step=m.step,
            metric=m.metric,
            label=m.label,
            value=m.value,
            support=m.support,
            evaluated_at=started,
            details=m.details | ({"dead_letters": len(dead)} if m.metric == "completed" else {}),
        )
        for m in metrics
    ]
    previous_version, previous = _previous_scores(client, suite, workflow_version)
    write_scores(client, scores)
    verdicts = [_judge(suite, s, previous) for s in scores if not s.label]
    return EvalReport(suite, workflow_version, len(published), len(results), verdicts, previous_version)


def _ensure_artifact(settings: Settings, suite: Suite) -> None:
    name, version = resolve(settings.models_dir, suite.intent_model)
    if version is not None:
        return
    if suite.train_data is None or "@" in suite.intent_model.removeprefix(name):
        raise SuiteError(
            f"no artifact {suite.intent_model!r} under {settings.models_dir}; run `riverbed train`"
        )
    train(settings.models_dir, name, suite.train_data, label_column=suite.train_label_column)


async def _publish_and_collect(
    settings: Settings, suite: Suite, rows: list[dict[str, Any]]
) -> tuple[dict[str, dict[str, Any]], set[str], dict[str, dict[str, Any]]]:
    """Results (decoded) and dead letters by input event id, and the rows by the id they went out as."""
    start = await end_offsets(settings.kafka_bootstrap, [TICKET_TRIAGED, dlq_topic(TICKET_CREATED)])
    drafts = list(
        ticket_drafts(
            rows,
            tenant=f"eval-{suite.name}",
            text_column=suite.text_column,
            label_column=None,
            id_prefix=f"{suite.name}-",
        )
    )
    sent = await publish(settings.kafka_bootstrap, drafts, source=f"urn:riverbed:eval:{suite.name}")
    published = {p.event_id: row for p, row in zip(sent, rows, strict=True)}
    results: dict[str, dict[str, Any]] = {}
    dead: set[str] = set()
    consumer = await reader_from(settings.kafka_bootstrap, start)
    deadline = time.monotonic() + suite.timeout_s
    try:
        while len(results) + len(dead) < len(published) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for record in records:
                    headers = env.header_map(record.headers)
                    if record.topic == TICKET_TRIAGED:
                        cause = headers.get("ce_causationid", "")
                        if cause in published:
                            results[cause] = decode(TICKET_TRIAGED, record.value)
                    elif headers.get("ce_id", "") in published:
                        dead.add(headers["ce_id"])
    finally:
        await consumer.stop()
    return results, dead, published


def score(
    suite: Suite, published: dict[str, dict[str, Any]], results: dict[str, dict[str, Any]]
) -> list[Metric]:
    done = [eid for eid in published if eid in results]
    metrics: list[Metric] = []
    if suite.expected.classify:
        column = suite.expected.classify
        metrics += classification(
            "classify",
            [str(published[e][column]) for e in done],
            [str(results[e]["intent"]) for e in done],
            [float(results[e]["intent_confidence"]) for e in done],
        )
    if suite.expected.extract:
        column = suite.expected.extract
        expected = [[(x["label"], x["text"]) for x in _entity_list(published[e][column])] for e in done]
        produced = [[(x["label"], x["text"]) for x in results[e]["entities"]] for e in done]
        if suite.entity_labels:
            mapping, kept = suite.entity_labels, set(suite.entity_labels.values())
            expected = [[(mapping[t], x) for t, x in items if t in mapping] for items in expected]
            produced = [[(t, x) for t, x in items if t in kept] for items in produced]
        metrics += extraction("extract", expected, produced)
    metrics += summaries(
        "summarize",
        [str(published[e][suite.text_column]) for e in done],
        [str(results[e]["summary"]) for e in done],
        [[x["text"] for x in results[e]["entities"]] for e in done],
    )
    return metrics


def _entity_list(value: Any) -> list[dict[str, str]]:
    """A CSV cell holds the entities as a JSON string; a JSONL row may hold the list itself."""
    return list(json.loads(value) if isinstance(value, str) and value else value or [])


def _previous_scores(
    client: ClickHouseClient, suite: Suite, version: str
) -> tuple[str | None, dict[tuple[str, str], float]]:
    """The newest scores of the most recently evaluated *other* workflow version on this suite."""
    rows = client.query_dicts(
        "SELECT workflow_version, max(evaluated_at) AS last_run FROM evaluations FINAL "
        "WHERE dataset = {d:String} AND workflow_version != {v:String} "
        "GROUP BY workflow_version ORDER BY last_run DESC LIMIT 1",
        {"d": suite.name, "v": version},
    )
    if not rows:
        return None, {}
    previous = str(rows[0]["workflow_version"])
    scores = client.query_dicts(
        "SELECT step, metric, argMax(value, evaluated_at) AS score FROM evaluations FINAL "
        "WHERE dataset = {d:String} AND workflow_version = {v:String} AND label = '' AND event_id = '' "
        "GROUP BY step, metric",
        {"d": suite.name, "v": previous},
    )
    return previous, {(r["step"], r["metric"]): float(r["score"]) for r in scores}


def _judge(suite: Suite, s: Score, previous: dict[tuple[str, str], float]) -> Verdict:
    key = f"{s.step}.{s.metric}"
    bounds, failed = [], False
    if key in suite.floors:
        bounds.append(f"≥ {suite.floors[key]:g}")
        failed |= s.value < suite.floors[key]
    if key in suite.ceilings:
        bounds.append(f"≤ {suite.ceilings[key]:g}")
        failed |= s.value > suite.ceilings[key]
    before = previous.get((s.step, s.metric))
    if before is not None and (key in suite.floors or key in suite.ceilings):
        worse = s.value - before if s.metric in LOWER_IS_BETTER else before - s.value
        failed |= worse > suite.margin
    return Verdict(s, ", ".join(bounds), before, failed)
