"""Running one workflow step over a batch: one gateway request per live item, failures taken out.

An item whose step fails leaves the batch with a StepFailure; the rest continue. This is the
explicit routing faust lacks (an exception inside an agent would ack and lose the event).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from typing import Any

from agents.deps import WorkflowDeps
from agents.outcome import BatchOutcome, InboundEvent, OutboundEvent, StepFailure, WorkItem
from gateway.gateway import Gateway
from gateway.models import CallContext, GatewayError, ModelRequest, Task
from streams import envelope as env


def context_for(item: WorkItem, *, workflow: str, version: str, step: str) -> CallContext:
    data = item.envelope.data
    return CallContext(
        event_id=item.envelope.id,
        tenant_id=item.envelope.tenant_id,
        workflow=workflow,
        workflow_version=version,
        step=step,
        event_time=item.envelope.time.astimezone(UTC),
        sensitivity=str(data.get("sensitivity", "internal")),
        attempt=item.attempt,
    )


async def model_step(
    gateway: Gateway,
    items: list[WorkItem],
    outcome: BatchOutcome,
    *,
    workflow: str,
    version: str,
    step: str,
    task: Task,
    build: Callable[[WorkItem, CallContext], ModelRequest],
    store: Callable[[WorkItem, Any], None],
) -> list[WorkItem]:
    """Run ``task`` for every item, ``store`` each output, return the items still alive."""
    if not items:
        return []
    requests = [
        build(item, context_for(item, workflow=workflow, version=version, step=step)) for item in items
    ]
    responses = await gateway.run(requests, outcome.traces)
    alive: list[WorkItem] = []
    for item, response in zip(items, responses, strict=True):
        if isinstance(response, GatewayError):
            outcome.failures.append(
                (item.inbound, StepFailure.from_exception(step, response, retryable=response.retryable))
            )
            continue
        item.used(f"{response.provider}/{response.model}")
        store(item, response.output)
        alive.append(item)
    return alive


def fail(outcome: BatchOutcome, item: WorkItem, step: str, exc: BaseException, *, retryable: bool) -> None:
    outcome.failures.append((item.inbound, StepFailure.from_exception(step, exc, retryable=retryable)))


def first_failure_per_event(
    failures: list[tuple[InboundEvent, StepFailure]],
) -> list[tuple[InboundEvent, StepFailure]]:
    """One dead letter per event even when parallel steps both failed it; the first reason wins."""
    seen: set[tuple[str, int, int]] = set()
    unique = []
    for inbound, failure in failures:
        key = (inbound.topic, inbound.partition, inbound.offset)
        if key not in seen:
            seen.add(key)
            unique.append((inbound, failure))
    return unique


def workflow_version(revision: str, deps: WorkflowDeps, task: Task) -> str:
    """The revision of the step code plus what answers the workflow's defining task (a classifier
    artifact or a prompt version): either change is visible. A shadow run's version says so, so its
    result and trace ids can never collide with production's."""
    version = f"{revision}+{deps.gateway.prompt_version(task)}"
    return f"{version}+shadow" if deps.settings.shadow else version


def result_event(
    item: WorkItem,
    *,
    workflow: str,
    topic: str,
    key: str,
    record: dict[str, Any],
    version: str,
    extra_headers: list[tuple[str, bytes]] | None = None,
) -> OutboundEvent:
    """The result of ``item`` as an event: its id derives from the cause and workflow version, so a
    redelivered input yields the same result id, and its headers name the cause."""
    event_id = env.result_event_id(item.envelope.id, version)
    value, headers, _ = env.encode_event(
        topic,
        record,
        event_id=event_id,
        source=f"urn:riverbed:agents:{workflow}",
        causation_id=item.envelope.id,
    )
    return OutboundEvent(topic, key.encode(), value, headers + (extra_headers or []), event_id)
