"""What every HTTP provider shares: the reply shape, keys from the environment or a secrets file,
and the one function that turns an HTTP failure into the gateway's error model (gateway/errors.py).
The wire clients themselves are in gateway/providers/http.py.
"""

from __future__ import annotations

import email.utils
import json
import os
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import SecretStr

from gateway.errors import (
    AttemptError,
    AuthFailed,
    ContentRejected,
    ContextOverflow,
    MalformedResponse,
    ProviderUnavailable,
    RateLimited,
)
from gateway.policy import ProviderConfig, Route

CONTEXT_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "prompt is too long",
    "context window",
    "too many tokens",
)


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(frozen=True)
class Reply:
    output: Any
    """Text for chat, a list of vectors for embeddings."""
    usage: Usage
    model: str
    """The model that answered, as the provider names it (may differ from the requested alias)."""
    extra: dict[str, Any] = field(default_factory=dict)


class HttpProvider(Protocol):
    name: str
    config: ProviderConfig

    async def chat(
        self,
        route: Route,
        messages: Sequence[Message],
        *,
        json_schema: dict[str, Any] | None,
        timeout_s: float,
    ) -> Reply: ...

    async def embed(self, route: Route, texts: Sequence[str], *, timeout_s: float) -> Reply: ...

    async def aclose(self) -> None: ...


class Secrets:
    """API keys by variable name: the environment wins, then a TOML file of ``NAME = "key"`` lines
    (kept out of the repo, readable only by the service user). Values are SecretStr, so a stray log
    line or repr shows asterisks."""

    def __init__(self, path: Path | None = None) -> None:
        self._file: dict[str, SecretStr] = {}
        if path is not None and path.exists():
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
            self._file = {k: SecretStr(str(v)) for k, v in raw.items()}

    def get(self, name: str) -> SecretStr | None:
        if not name:
            return None
        value = os.environ.get(name)
        return SecretStr(value) if value else self._file.get(name)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms``, else ``retry-after`` (seconds or date).
    ``headers`` must look names up case-insensitively, as both HTTP clients' header types do."""
    if ms := headers.get("retry-after-ms"):
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def error_for_status(status: int, text: str, headers: Mapping[str, str]) -> AttemptError:
    """The gateway's error for a non-2xx answer, from its status, body text and headers."""
    text = text[:500]
    message = f"HTTP {status}: {text}"
    if status == 429:
        return RateLimited(message, retry_after_s=retry_after_s(headers))
    if status >= 500 or status == 408:
        return ProviderUnavailable(message, status=status)
    if status in (401, 403):
        return AuthFailed(f"HTTP {status}: authentication failed", status=status)
    if status in (400, 413, 422):
        lowered = text.lower()
        if any(marker in lowered for marker in CONTEXT_MARKERS):
            return ContextOverflow(message, status=status)
        return ContentRejected(message, status=status)
    return AttemptError(message, status=status)


def decode_json(body: bytes) -> Any:
    """A 2xx body as JSON, or MalformedResponse (invalid UTF-8 included)."""
    try:
        return json.loads(body)
    except ValueError as exc:
        raise MalformedResponse(f"body is not JSON: {body[:200]!r}") from exc


def usage_int(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0
