"""OpenAI-compatible chat completions and embeddings: OpenAI itself, vLLM, Ollama, llama.cpp server,
TEI and the many servers that speak the same wire format."""

from __future__ import annotations

import array
import base64
import sys
from collections.abc import Sequence
from typing import Any

from gateway.errors import MalformedResponse
from gateway.policy import ProviderConfig, Route
from gateway.providers.base import Message, Reply, Secrets, Usage, usage_int
from gateway.providers.http import make_client


def vector_of(embedding: Any) -> list[float]:
    """One embedding as floats, from either wire shape: a JSON list of numbers, or base64 of
    little-endian float32 (``encoding_format="base64"``). Raises ValueError or TypeError on
    anything else, a base64 string whose length is not whole float32s included."""
    if isinstance(embedding, str):
        raw = base64.b64decode(embedding, validate=True)
        if len(raw) % 4:
            raise ValueError(f"base64 embedding of {len(raw)} bytes is not whole float32s")
        values = array.array("f", raw)
        if sys.byteorder != "little":
            values.byteswap()
        return values.tolist()
    if not isinstance(embedding, list):
        raise TypeError(f"embedding is a {type(embedding).__name__}, not a list or base64 string")
    return [float(x) for x in embedding]


class OpenAIProvider:
    def __init__(self, name: str, config: ProviderConfig, secrets: Secrets) -> None:
        self.name = name
        self.config = config
        key = secrets.get(config.api_key_env)
        headers = {"authorization": f"Bearer {key.get_secret_value()}"} if key else {}
        self._client = make_client(config, headers)

    async def chat(
        self,
        route: Route,
        messages: Sequence[Message],
        *,
        json_schema: dict[str, Any] | None,
        timeout_s: float,
    ) -> Reply:
        payload: dict[str, Any] = {
            "model": route.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": route.max_tokens,
        }
        if route.temperature is not None:
            payload["temperature"] = route.temperature
        if json_schema is not None:
            payload["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": json_schema, "strict": True},
            }
        body = await self._client.post_json("chat/completions", payload, timeout_s)
        try:
            content = body["choices"][0]["message"]["content"]
            usage = body.get("usage") or {}
            details = usage.get("prompt_tokens_details") or {}
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise MalformedResponse(f"not a chat completion: {str(body)[:200]}") from exc
        if not isinstance(content, str):
            raise MalformedResponse("chat completion without text content")
        return Reply(
            output=content,
            usage=Usage(
                input_tokens=usage_int(usage.get("prompt_tokens")),
                output_tokens=usage_int(usage.get("completion_tokens")),
                cache_read_tokens=usage_int(details.get("cached_tokens")),
            ),
            model=str(body.get("model") or route.model),
        )

    async def embed(self, route: Route, texts: Sequence[str], *, timeout_s: float) -> Reply:
        payload: dict[str, Any] = {"model": route.model, "input": list(texts)}
        if route.dimensions is not None:
            payload["dimensions"] = route.dimensions
        if self.config.embeddings_base64:
            payload["encoding_format"] = "base64"
        body = await self._client.post_json("embeddings", payload, timeout_s)
        try:
            rows = sorted(body["data"], key=lambda row: row["index"])
            vectors = [vector_of(row["embedding"]) for row in rows]
            usage = body.get("usage") or {}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedResponse(f"not an embeddings response: {str(body)[:200]}") from exc
        if len(vectors) != len(texts):
            raise MalformedResponse(f"{len(vectors)} embeddings for {len(texts)} inputs")
        return Reply(
            output=vectors,
            usage=Usage(input_tokens=usage_int(usage.get("prompt_tokens"))),
            model=str(body.get("model") or route.model),
        )

    async def aclose(self) -> None:
        await self._client.aclose()
