"""The semantic cache: an answer to a *similar* earlier prompt, when it is close enough to reuse.

Prompts are embedded and stored in the vector store with the answer in the payload. A lookup is one
filtered nearest-neighbour search: the store's tenant filter (every search of the VectorStore port
requires one) plus a ``kind`` that encodes the task and the policy fingerprint. So an answer can never
cross tenants (the leak a popular gateway had: its semantic cache matched across teams), tasks, or a
policy edit, and only hits at or above the task's similarity threshold are served.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sinks.vectors.base import VectorPoint, VectorStore, point_id

EmbedFn = Callable[[Sequence[str]], Any]
"""Text → unit vectors (a row per text: a float matrix or nested sequences); called off the event
loop, it is CPU work."""


@dataclass(frozen=True)
class SemanticHit:
    output: Any
    provider: str
    model: str
    route: str
    similarity: float


def _kind(task: str, policy_fingerprint: str) -> str:
    return f"semcache:{task}:{policy_fingerprint}"


class SemanticCache:
    def __init__(self, store: VectorStore, embed: EmbedFn, dimensions: int) -> None:
        self._store = store
        self._embed = embed
        store.ensure_collection(dimensions)

    async def lookup(
        self, tenant: str, task: str, policy_fingerprint: str, prompt: str, threshold: float
    ) -> tuple[SemanticHit | None, Sequence[float]]:
        """The best hit at or above ``threshold`` (or None), and the prompt's vector for ``store``."""
        vector = (await asyncio.to_thread(self._embed, [prompt]))[0]
        hits = self._store.search(vector, tenant_id=tenant, limit=1, kinds=[_kind(task, policy_fingerprint)])
        if not hits or hits[0].score < threshold:
            return None, vector
        payload = hits[0].payload
        hit = SemanticHit(
            output=json.loads(payload["answer"]),
            provider=str(payload["provider"]),
            model=str(payload["model"]),
            route=str(payload["route"]),
            similarity=hits[0].score,
        )
        return hit, vector

    def store(
        self,
        tenant: str,
        task: str,
        policy_fingerprint: str,
        prompt: str,
        vector: Sequence[float],
        *,
        output: Any,
        provider: str,
        model: str,
        route: str,
    ) -> None:
        kind = _kind(task, policy_fingerprint)
        payload = {
            "tenant_id": tenant,
            "kind": kind,
            "source_id": point_id(kind, prompt),
            "text": prompt[:2000],
            "answer": json.dumps(output),
            "provider": provider,
            "model": model,
            "route": route,
        }
        self._store.upsert([VectorPoint(point_id(tenant, kind, prompt), vector, payload)])

    def close(self) -> None:
        self._store.close()
