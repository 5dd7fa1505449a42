"""Which classifications a human must confirm before anyone acts on them.

A result is *final* unless the task's policy (gateway/routes.toml: ``review_below``, ``review_labels``)
says otherwise: its calibrated confidence is under the floor, or its label is one the business
treats as high risk (a stolen card, a compromised account). A non-final result is still published —
downstream must see it, marked — and a copy goes to the workflow's review topic, so the queue a
human works from and the result stream never disagree about what is pending.
"""

from __future__ import annotations

from gateway.models import Prediction
from gateway.policy import TaskPolicy
from streams.envelope import FINAL_HEADER, REVIEW_REASONS_HEADER


def review_reasons(prediction: Prediction, policy: TaskPolicy) -> list[str]:
    reasons = []
    if policy.review_below is not None and prediction.confidence < policy.review_below:
        reasons.append(f"low_confidence<{policy.review_below:g}")
    if prediction.label in policy.review_labels:
        reasons.append(f"high_risk_label:{prediction.label}")
    return reasons


def review_headers(reasons: list[str]) -> list[tuple[str, bytes]]:
    return [
        (FINAL_HEADER, b"false" if reasons else b"true"),
        (REVIEW_REASONS_HEADER, ",".join(reasons).encode()),
    ]
