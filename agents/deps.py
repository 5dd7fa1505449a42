"""What a workflow needs from the outside world, bundled so tests can build it from real parts."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from gateway.gateway import Gateway
from sinks.vectors import VectorStore
from streams.config import Settings


@dataclass
class WorkflowDeps:
    settings: Settings
    gateway: Gateway
    vectors: VectorStore
    http: httpx.AsyncClient
