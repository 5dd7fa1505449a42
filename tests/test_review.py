"""Which classifications wait for a human: the policy's confidence floor and high-risk labels."""

from __future__ import annotations

from agents.review import review_headers, review_reasons
from gateway.models import Prediction
from gateway.policy import Route, TaskPolicy


def policy(**review: object) -> TaskPolicy:
    return TaskPolicy(routes=[Route(provider="local")], **review)  # type: ignore[arg-type]


def test_confidence_floor_and_high_risk_labels() -> None:
    unsure = Prediction("card_arrival", 0.42, (("card_arrival", 0.42),))
    sure_risky = Prediction("compromised_card", 0.97, (("compromised_card", 0.97),))
    rules = policy(review_below=0.5, review_labels=["compromised_card"])
    assert review_reasons(unsure, rules) == ["low_confidence<0.5"]
    assert review_reasons(sure_risky, rules) == ["high_risk_label:compromised_card"]
    assert review_reasons(Prediction("card_arrival", 0.5, ()), rules) == []  # the floor itself is final
    assert review_reasons(unsure, policy()) == []  # no policy, nothing held back


def test_headers_say_final_or_why_not() -> None:
    assert dict(review_headers([])) == {"x-riverbed-final": b"true", "x-riverbed-review-reasons": b""}
    held = dict(review_headers(["low_confidence<0.5", "high_risk_label:x"]))
    assert held["x-riverbed-final"] == b"false"
    assert held["x-riverbed-review-reasons"] == b"low_confidence<0.5,high_risk_label:x"
