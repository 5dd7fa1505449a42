"""The wire under every HTTP provider: POST a JSON body, get JSON back or a classified AttemptError.

Two clients, one shared pool per provider, chosen by the provider's ``transport``:

* httpx with HTTP/2 negotiated by ALPN, for TLS endpoints (hosted providers serve h2 and multiplex
  hundreds of calls over a few connections);
* aiohttp's HTTP/1.1 keep-alive pool used directly, for plain-HTTP servers next to us (vLLM, Ollama,
  TEI, the fake provider), where h2c is never negotiated. This is the hot path of a worker whose
  steps call a model server on the same network, ~1,000 calls a second at 256 events in flight.
  Before, httpx's request model sat on top of aiohttp's pool: a scratch probe measured ~350 µs of
  CPU per call for that, ~110 µs for aiohttp alone. ``python bench/gateway.py --only wire`` prints
  what the two clients here cost (150 µs for aiohttp, 1,657 µs for httpx's own HTTP/1.1, 64 calls
  in flight).

``auto`` picks by URL scheme. Both clients map the same failures to the same errors
(tests/test_gateway.py runs one script of wire failures through each).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import aiohttp
import httpx
from yarl import URL

from gateway.errors import ProviderTimeout, ProviderUnavailable
from gateway.policy import ProviderConfig
from gateway.providers.base import decode_json, error_for_status


class JsonClient(Protocol):
    async def post_json(self, path: str, payload: dict[str, Any], timeout_s: float) -> Any:
        """The decoded JSON body of a 2xx answer; otherwise raises the classified AttemptError."""
        ...

    async def aclose(self) -> None: ...


def join_url(base_url: str, path: str) -> str:
    """``path`` below ``base_url`` whether or not either has the slash (as httpx merges them)."""
    return f"{base_url.rstrip('/')}/{path.lstrip('/')}"


class HttpxJsonClient:
    def __init__(self, config: ProviderConfig, headers: dict[str, str]) -> None:
        limits = httpx.Limits(
            max_connections=config.max_connections, max_keepalive_connections=config.max_connections
        )
        self._client = httpx.AsyncClient(
            headers=headers, http2=True, limits=limits, timeout=httpx.Timeout(config.timeout_s)
        )
        self._base_url = config.base_url

    async def post_json(self, path: str, payload: dict[str, Any], timeout_s: float) -> Any:
        try:
            url = join_url(self._base_url, path)
            response = await self._client.post(url, json=payload, timeout=timeout_s)
        except httpx.TimeoutException as exc:
            raise ProviderTimeout(f"no answer within {timeout_s:.3g}s ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:  # refused, reset, truncated body
            raise ProviderUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 300:
            raise error_for_status(response.status_code, response.text, response.headers)
        return decode_json(response.content)

    async def aclose(self) -> None:
        await self._client.aclose()


class AiohttpJsonClient:
    """The session is opened on first use: aiohttp binds it to the running event loop, and a
    provider is built before the worker's loop runs."""

    def __init__(self, config: ProviderConfig, headers: dict[str, str]) -> None:
        self._base_url = config.base_url
        self._headers = {**headers, "content-type": "application/json"}
        self._max_connections = config.max_connections
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0),
                headers=self._headers,
            )
        return self._session

    async def post_json(self, path: str, payload: dict[str, Any], timeout_s: float) -> Any:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(join_url(self._base_url, path))
        timeout = self._timeouts.get(timeout_s)
        if timeout is None:
            timeout = self._timeouts[timeout_s] = aiohttp.ClientTimeout(total=timeout_s)
        try:
            async with self._open().post(url, data=json.dumps(payload).encode(), timeout=timeout) as response:
                body = await response.read()
                status, headers = response.status, response.headers
        except TimeoutError as exc:
            raise ProviderTimeout(f"no answer within {timeout_s:.3g}s ({type(exc).__name__})") from exc
        except aiohttp.ClientError as exc:  # refused, reset, truncated body
            raise ProviderUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if status >= 300:
            raise error_for_status(status, body.decode("utf-8", "replace"), headers)
        return decode_json(body)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def make_client(config: ProviderConfig, headers: dict[str, str]) -> JsonClient:
    use_aiohttp = config.transport == "aiohttp" or (
        config.transport == "auto" and config.base_url.startswith("http://")
    )
    if use_aiohttp:
        return AiohttpJsonClient(config, headers)
    return HttpxJsonClient(config, headers)
