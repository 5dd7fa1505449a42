"""What a remote model must answer for the workflows' own tasks, and how the answer becomes the same
typed output the local tier returns — so a workflow never knows (or cares) which route answered.

A chat route serving ``classify_intent`` is asked for JSON matching a schema (validated by the
gateway; a non-conforming answer is a MalformedResponse and falls back) and its answer becomes a
``Prediction``; ``extract`` answers become ``Entity`` lists; ``summarize`` stays text; an embeddings
route's vectors become a float32 matrix, one row per input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.models import Entity, ModelRequest, Prediction


@dataclass(frozen=True)
class Contract:
    instruction: str
    """System prompt used when the task's policy gives none."""
    schema: dict[str, Any] | None
    parse: Callable[[Any, ModelRequest], Any]


def _prediction(value: Any, _req: ModelRequest) -> Prediction:
    confidence = float(value["confidence"])
    return Prediction(str(value["label"]), confidence, ((str(value["label"]), confidence),))


def _entities(value: Any, req: ModelRequest) -> list[Entity]:
    out = []
    for entity in value["entities"]:
        text = str(entity["text"])
        start = req.text.find(text)
        out.append(Entity(str(entity["label"]), text, start, start + len(text) if start >= 0 else -1))
    return out


CONTRACTS: dict[str, Contract] = {
    "classify_intent": Contract(
        instruction="Classify the customer's intent. Answer with the intent label and your confidence (0-1).",
        schema={
            "type": "object",
            "properties": {
                "label": {"type": "string", "minLength": 1},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            },
            "required": ["label", "confidence"],
        },
        parse=_prediction,
    ),
    "extract": Contract(
        instruction=(
            "List the entities in the text: MONEY, DATE, EMAIL, CARD, ACCOUNT, ORG. "
            "Copy each entity's text exactly as written."
        ),
        schema={
            "type": "object",
            "properties": {
                "entities": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"label": {"type": "string"}, "text": {"type": "string"}},
                        "required": ["label", "text"],
                    },
                }
            },
            "required": ["entities"],
        },
        parse=_entities,
    ),
    "summarize": Contract(
        instruction="Summarize the text in one or two sentences.", schema=None, parse=lambda v, _r: str(v)
    ),
}


def embedding_matrix(vectors: Any) -> Any:
    """Remote embeddings as the local tier returns them: float32, one row per input."""
    return np.asarray(vectors, dtype=np.float32)
