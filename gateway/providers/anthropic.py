"""Anthropic's Messages API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.errors import AttemptError, MalformedResponse
from gateway.policy import ProviderConfig, Route
from gateway.providers.base import Message, Reply, Secrets, Usage, usage_int
from gateway.providers.http import make_client

API_VERSION = "2023-06-01"


class AnthropicProvider:
    def __init__(self, name: str, config: ProviderConfig, secrets: Secrets) -> None:
        self.name = name
        self.config = config
        key = secrets.get(config.api_key_env)
        headers = {"anthropic-version": API_VERSION}
        if key:
            headers["x-api-key"] = key.get_secret_value()
        self._client = make_client(config, headers)

    async def chat(
        self,
        route: Route,
        messages: Sequence[Message],
        *,
        json_schema: dict[str, Any] | None,
        timeout_s: float,
    ) -> Reply:
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        if json_schema is not None:  # no native schema mode: ask for JSON, the gateway validates it
            system = (
                f"{system}\n\nAnswer with one JSON value matching this JSON schema: {json_schema}".strip()
            )
        payload: dict[str, Any] = {
            "model": route.model,
            "max_tokens": route.max_tokens,
            "messages": [{"role": m.role, "content": m.content} for m in messages if m.role != "system"],
        }
        if system:
            payload["system"] = system
        if route.temperature is not None:
            payload["temperature"] = route.temperature
        body = await self._client.post_json("/v1/messages", payload, timeout_s)
        try:
            text = "".join(b["text"] for b in body["content"] if b.get("type") == "text")
            usage = body["usage"]
        except (KeyError, TypeError, AttributeError) as exc:
            raise MalformedResponse(f"not a Messages response: {str(body)[:200]}") from exc
        return Reply(
            output=text,
            usage=_usage(usage),
            model=str(body.get("model") or route.model),
        )

    async def embed(self, route: Route, texts: Sequence[str], *, timeout_s: float) -> Reply:
        raise AttemptError("Anthropic has no embeddings API; route embed elsewhere")

    async def aclose(self) -> None:
        await self._client.aclose()


def _usage(usage: dict[str, Any]) -> Usage:
    """Anthropic counts cached prompt tokens apart from ``input_tokens``; the gateway's input count
    includes them (as OpenAI's and the OpenTelemetry GenAI convention's do), with the cached share
    reported beside it."""
    read = usage_int(usage.get("cache_read_input_tokens"))
    write = usage_int(usage.get("cache_creation_input_tokens"))
    return Usage(
        input_tokens=usage_int(usage.get("input_tokens")) + read + write,
        output_tokens=usage_int(usage.get("output_tokens")),
        cache_read_tokens=read,
        cache_write_tokens=write,
    )
