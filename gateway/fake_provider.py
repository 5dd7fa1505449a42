"""A fake model provider that is a real HTTP server on loopback, for tests and benchmarks.

The gateway's hard parts are at the wire: connection handling, timeouts, retry-after headers, status
codes, JSON that does not parse or does not fit the schema, bodies cut off mid-stream. A mock of the
client library would skip all of that, so this is an aiohttp server speaking the OpenAI
(`/v1/chat/completions`, `/v1/embeddings`) and Anthropic (`/v1/messages`) wire formats. Each request
is answered by a scripted `Behaviour` (per model, first in first out, then a default), so a test can
say "429 with retry-after, then 500, then ok" and watch the gateway's real HTTP client deal with it.

The server runs on its own event loop in a daemon thread; the control methods (`script`,
`set_default`, `set_rate_limit`, `received`, ...) are called from the test's thread and share state
with the handlers under one lock. `python -m gateway.fake_provider` serves it in the foreground for
benchmarks that want it in a separate process. The answering path is kept lean (no logging, one
`json.dumps` per answer) because benchmarks measure the gateway's overhead against it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import itertools
import json
import math
import signal
import struct
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from aiohttp import web

__all__ = ["Api", "Behaviour", "BodyKind", "FakeProvider", "ReceivedRequest", "main"]

Api = Literal["openai_chat", "openai_embeddings", "anthropic"]
BodyKind = Literal["ok", "malformed_json", "truncated", "wrong_schema", "context_overflow", "content_error"]

HANG_S: Final = 3600.0
DEFAULT_EMBEDDING_DIMENSIONS: Final = 8
# Window quoted in a scripted context_overflow for a model without set_context_window.
NOMINAL_CONTEXT_WINDOW: Final = 8192
MAX_REQUEST_BYTES: Final = 64 * 1024 * 1024
NO_ANSWER_STATUS: Final = 0  # recorded status of a request answered by `hang`

MALFORMED_JSON: Final = b'{"id": "x", "choices": ['
WRONG_SCHEMA: Final = b'{"result": "nope"}'
JSON_CONTENT_TYPE: Final = "application/json"


@dataclass(frozen=True)
class Behaviour:
    """How the server answers one request."""

    latency_s: float = 0.0  # sleep before answering
    status: int = 200  # non-2xx answers with the API's error JSON (for body "ok")
    retry_after_s: float | None = None  # sets `retry-after` (ceil seconds) and `retry-after-ms`
    hang: bool = False  # never answer (sleep about an hour); the client must time out
    body: BodyKind = "ok"
    content: str | None = None  # answer text; default "echo: <last user message text>"
    input_tokens: int | None = None  # default: whitespace words in all prompt texts (min 1)
    output_tokens: int | None = None  # default: whitespace words in the answer (min 1)
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the server saw it; `status` is what it answered (0: never, it hung)."""

    api: Api
    model: str
    headers: dict[str, str]  # lower-cased names
    body: dict[str, Any]
    status: int
    received_at: float  # time.monotonic() on arrival


@dataclass(frozen=True, slots=True)
class _Prompt:
    model: str
    words: int  # whitespace words across every prompt text
    last_user: str
    wants_json: bool = False
    inputs: tuple[str, ...] = ()  # embeddings only
    dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS
    base64: bool = False


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


# --- parsing requests -------------------------------------------------------------------------------


def _text_of(content: object) -> str:
    """The text of a message's content: a string, or the text blocks of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _model_of(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _BadRequest("you must provide a model parameter", "model")
    return model


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise _BadRequest("messages: a list of {role, content} objects is required", "messages")
    return messages


def _conversation(messages: list[dict[str, Any]], extra: Sequence[str] = ()) -> tuple[int, str]:
    """Word count of every text (messages plus `extra`) and the text of the last user message."""
    words = sum(len(text.split()) for text in extra)
    last_user = ""
    for message in messages:
        text = _text_of(message.get("content"))
        words += len(text.split())
        if message.get("role") == "user":
            last_user = text
    return words, last_user


def _parse_openai_chat(body: dict[str, Any]) -> _Prompt:
    model = _model_of(body)
    words, last_user = _conversation(_messages(body))
    response_format = body.get("response_format")
    wants_json = isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    )
    return _Prompt(model, words, last_user, wants_json=wants_json)


def _parse_anthropic(body: dict[str, Any]) -> _Prompt:
    model = _model_of(body)
    messages = _messages(body)
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _BadRequest("max_tokens: Field required (a positive integer)", "max_tokens")
    words, last_user = _conversation(messages, (_text_of(body.get("system")),))
    return _Prompt(model, words, last_user)


def _parse_openai_embeddings(body: dict[str, Any]) -> _Prompt:
    model = _model_of(body)
    raw = body.get("input")
    if isinstance(raw, str):
        inputs: tuple[str, ...] = (raw,)
    elif isinstance(raw, list) and raw:
        inputs = tuple(item if isinstance(item, str) else json.dumps(item) for item in raw)
    else:
        raise _BadRequest("'input' must be a string or a non-empty list of strings", "input")
    dimensions = body.get("dimensions", DEFAULT_EMBEDDING_DIMENSIONS)
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
        raise _BadRequest("'dimensions' must be a positive integer", "dimensions")
    words = sum(len(text.split()) for text in inputs)
    base64_out = body.get("encoding_format") == "base64"
    return _Prompt(model, words, inputs[-1], inputs=inputs, dimensions=dimensions, base64=base64_out)


_PARSERS: Final[dict[Api, Callable[[dict[str, Any]], _Prompt]]] = {
    "openai_chat": _parse_openai_chat,
    "openai_embeddings": _parse_openai_embeddings,
    "anthropic": _parse_anthropic,
}


# --- building answers -------------------------------------------------------------------------------

_OPENAI_ERRORS: Final[dict[int, tuple[str, str | None]]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}
_ANTHROPIC_ERRORS: Final[dict[int, str]] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _error_json(
    api: Api, status: int, message: str, *, param: str | None = None, code: str | None = None
) -> bytes:
    """The provider's error body for `status`; `code` (OpenAI only) overrides the status's code."""
    if api == "anthropic":
        kind = _ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
    kind, default_code = _OPENAI_ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    error = {"message": message, "type": kind, "param": param, "code": code or default_code}
    return json.dumps({"error": error}).encode()


def _context_overflow_json(api: Api, tokens: int, window: int) -> bytes:
    if api == "anthropic":
        return _error_json(api, 400, f"prompt is too long: {tokens} tokens > {window} maximum")
    message = (
        f"This model's maximum context length is {window} tokens. However, your messages resulted in "
        f"{tokens} tokens. Please reduce the length of the messages."
    )
    param = "input" if api == "openai_embeddings" else "messages"
    return _error_json(api, 400, message, param=param, code="context_length_exceeded")


def _content_error_json(api: Api) -> bytes:
    if api == "anthropic":
        return _error_json(api, 400, "messages.0.content: the request content was rejected (scripted)")
    param = "input" if api == "openai_embeddings" else "messages"
    return _error_json(
        api, 400, f"Invalid value for '{param}': the request content was rejected (scripted).", param=param
    )


def _status_message(status: int) -> str:
    if status == 429:
        return "Rate limit exceeded (fake provider). Please retry after the time in the retry-after header."
    if status >= 500:
        return f"The server had an error while processing your request (fake provider, status {status})."
    return f"Request failed (fake provider, scripted status {status})."


def _embedding(text: str, dimensions: int) -> list[float]:
    """A unit vector derived from blake2b of the text: same text, same vector."""
    data = text.encode()
    values: list[float] = []
    block = 0
    while len(values) < dimensions:
        digest = hashlib.blake2b(data, digest_size=64, salt=block.to_bytes(16, "little")).digest()
        values.extend(word / 2147483648.0 - 1.0 for word in struct.unpack("<16I", digest))
        block += 1
    del values[dimensions:]
    norm = math.hypot(*values) or 1.0
    return [value / norm for value in values]


def _answer_text(prompt: _Prompt, behaviour: Behaviour) -> str:
    if behaviour.content is not None:
        return behaviour.content
    if prompt.wants_json:
        return json.dumps({"echo": prompt.last_user})
    return f"echo: {prompt.last_user}"


def _usage(prompt: _Prompt, behaviour: Behaviour, text: str) -> tuple[int, int]:
    input_tokens = behaviour.input_tokens if behaviour.input_tokens is not None else max(1, prompt.words)
    output_tokens = (
        behaviour.output_tokens if behaviour.output_tokens is not None else max(1, len(text.split()))
    )
    return input_tokens, output_tokens


def _openai_chat_json(prompt: _Prompt, behaviour: Behaviour, seq: int) -> bytes:
    text = _answer_text(prompt, behaviour)
    input_tokens, output_tokens = _usage(prompt, behaviour, text)
    payload = {
        "id": f"chatcmpl-fake{seq:012x}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": prompt.model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"},
        ],
        "usage": {
            "prompt_tokens": input_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
            "prompt_tokens_details": {"cached_tokens": behaviour.cache_read_tokens},
        },
    }
    return json.dumps(payload).encode()


def _anthropic_json(prompt: _Prompt, behaviour: Behaviour, seq: int) -> bytes:
    text = _answer_text(prompt, behaviour)
    input_tokens, output_tokens = _usage(prompt, behaviour, text)
    payload = {
        "id": f"msg_fake{seq:016x}",
        "type": "message",
        "role": "assistant",
        "model": prompt.model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_read_input_tokens": behaviour.cache_read_tokens,
            "cache_creation_input_tokens": behaviour.cache_write_tokens,
        },
    }
    return json.dumps(payload).encode()


def _openai_embeddings_json(prompt: _Prompt, behaviour: Behaviour, seq: int) -> bytes:
    data: list[dict[str, Any]] = []
    for index, text in enumerate(prompt.inputs):
        vector = _embedding(text, prompt.dimensions)
        embedding: list[float] | str = vector
        if prompt.base64:
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = behaviour.input_tokens if behaviour.input_tokens is not None else max(1, prompt.words)
    payload = {
        "object": "list",
        "data": data,
        "model": prompt.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return json.dumps(payload).encode()


_SUCCESS: Final[dict[Api, Callable[[_Prompt, Behaviour, int], bytes]]] = {
    "openai_chat": _openai_chat_json,
    "openai_embeddings": _openai_embeddings_json,
    "anthropic": _anthropic_json,
}


def _status_of(behaviour: Behaviour) -> int:
    """The status the server will send for `behaviour` (0 when it never answers)."""
    if behaviour.hang:
        return NO_ANSWER_STATUS
    if behaviour.body in ("context_overflow", "content_error"):
        return 400
    return behaviour.status


def _retry_headers(retry_after_s: float | None) -> dict[str, str] | None:
    if retry_after_s is None:
        return None
    return {
        "retry-after": str(math.ceil(retry_after_s)),
        "retry-after-ms": str(math.ceil(retry_after_s * 1000)),
    }


@dataclass(frozen=True, slots=True)
class _Plan:
    behaviour: Behaviour
    status: int
    window: int  # context window to quote in an overflow error


class _TokenBucket:
    def __init__(self, rpm: int, burst: int) -> None:
        self.rate = rpm / 60.0  # tokens per second
        self.capacity = float(burst)
        self.tokens = float(burst)
        self.updated = time.monotonic()

    def take(self, now: float) -> float | None:
        """Take a token: None when granted, else the seconds until the next one."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / self.rate


# --- the server -------------------------------------------------------------------------------------


class FakeProvider:
    """OpenAI- and Anthropic-shaped HTTP server on loopback with scripted answers per model."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, log_limit: int | None = None) -> None:
        """`log_limit` keeps only the latest requests in the log (0: none), for long benchmark runs."""
        self._host = host
        self._port = port
        self._bound_port: int | None = None
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Behaviour]] = {}
        self._defaults: dict[str, Behaviour] = {}
        self._default = Behaviour()
        self._windows: dict[str, int] = {}
        self._bucket: _TokenBucket | None = None
        self._log: deque[ReceivedRequest] = deque(maxlen=log_limit)
        self._seq = itertools.count(1)
        # Lifecycle; `_hanging` is touched only on the server thread.
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._startup_error: BaseException | None = None
        self._hanging: set[asyncio.Task[Any]] = set()

    # --- lifecycle ---

    @property
    def url(self) -> str:
        """Base URL, e.g. "http://127.0.0.1:54321"; the endpoints are under /v1/."""
        if self._bound_port is None:
            raise RuntimeError("FakeProvider is not started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._bound_port}"

    def start(self) -> FakeProvider:
        """Serve from a daemon thread; returns once the socket accepts connections."""
        if self._thread is not None:
            raise RuntimeError("FakeProvider is already started")
        ready = threading.Event()
        self._startup_error = None
        thread = threading.Thread(target=self._run, args=(ready,), name="fake-provider", daemon=True)
        thread.start()
        ready.wait()
        if self._startup_error is not None:
            thread.join()
            raise self._startup_error
        self._thread = thread
        return self

    def stop(self) -> None:
        """Cancel hanging answers, close the server and join its thread. Safe to call twice."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None or loop is None or stopping is None:
            return
        loop.call_soon_threadsafe(stopping.set)
        thread.join()
        self._thread = None
        self._bound_port = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        finally:
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post("/v1/chat/completions", self._handler("openai_chat"))
        app.router.add_post("/v1/embeddings", self._handler("openai_embeddings"))
        app.router.add_post("/v1/messages", self._handler("anthropic"))
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        try:
            await runner.setup()
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
            self._bound_port = int(runner.addresses[0][1])
        except BaseException as exc:
            self._startup_error = exc
            await runner.cleanup()
            ready.set()
            return
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            for task in list(self._hanging):
                task.cancel()
            await runner.cleanup()

    # --- control API (any thread) ---

    def script(self, model: str, *behaviours: Behaviour) -> None:
        """Queue behaviours for `model`; each request to it takes the next one, first in first out."""
        with self._lock:
            self._queues.setdefault(model, deque()).extend(behaviours)

    def set_default(self, behaviour: Behaviour, model: str | None = None) -> None:
        """Behaviour when the model's queue is empty; `model=None` is for every model without its own."""
        with self._lock:
            if model is None:
                self._default = behaviour
            else:
                self._defaults[model] = behaviour

    def set_rate_limit(self, rpm: int | None, burst: int | None = None) -> None:
        """Token bucket over all requests (`rpm=None` turns it off); over the limit answers 429.

        Capacity is `burst` (default max(1, rpm // 60)), refilled at rpm/60 tokens a second. A
        throttled request is logged with status 429 but consumes no scripted behaviour.
        """
        if rpm is not None and rpm < 1:
            raise ValueError("rpm must be at least 1 (or None for no limit)")
        if burst is not None and burst < 1:
            raise ValueError("burst must be at least 1")
        with self._lock:
            self._bucket = None if rpm is None else _TokenBucket(rpm, burst or max(1, rpm // 60))

    def set_context_window(self, model: str, tokens: int | None) -> None:
        """Requests to `model` whose default input-token count exceeds `tokens` get a context-length error."""
        with self._lock:
            if tokens is None:
                self._windows.pop(model, None)
            else:
                self._windows[model] = tokens

    def received(self, model: str | None = None) -> list[ReceivedRequest]:
        """A copy of the request log (every request, in arrival order), optionally for one model."""
        with self._lock:
            return [r for r in self._log if model is None or r.model == model]

    def count(self, model: str | None = None, status: int | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self._log
                if (model is None or r.model == model) and (status is None or r.status == status)
            )

    def reset(self) -> None:
        """Forget scripts, defaults, the rate limit, context windows and the request log."""
        with self._lock:
            self._queues.clear()
            self._defaults.clear()
            self._default = Behaviour()
            self._windows.clear()
            self._bucket = None
            self._log.clear()

    # --- answering (server thread) ---

    def _handler(self, api: Api) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._answer(api, request)

        return handle

    def _plan(
        self, api: Api, prompt: _Prompt, request: web.Request, body: dict[str, Any], now: float
    ) -> _Plan:
        """Decide the behaviour for one request and log it, under the lock."""
        headers = {name.lower(): value for name, value in request.headers.items()}
        with self._lock:
            window = self._windows.get(prompt.model)
            wait = self._bucket.take(now) if self._bucket is not None else None
            if wait is not None:
                behaviour = Behaviour(status=429, retry_after_s=wait)
            elif window is not None and prompt.words > window:
                behaviour = Behaviour(body="context_overflow")
            else:
                behaviour = self._next_behaviour(prompt.model)
            status = _status_of(behaviour)
            self._log.append(ReceivedRequest(api, prompt.model, headers, body, status, now))
        return _Plan(behaviour, status, window if window is not None else NOMINAL_CONTEXT_WINDOW)

    def _next_behaviour(self, model: str) -> Behaviour:
        queue = self._queues.get(model)
        if queue:
            return queue.popleft()
        return self._defaults.get(model, self._default)

    def _reject(
        self, api: Api, request: web.Request, raw: bytes, error: _BadRequest, now: float
    ) -> web.Response:
        """Answer a request that is not valid JSON or lacks a required field: 400, logged as such."""
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        model = body.get("model")
        headers = {name.lower(): value for name, value in request.headers.items()}
        entry = ReceivedRequest(api, model if isinstance(model, str) else "", headers, body, 400, now)
        with self._lock:
            self._log.append(entry)
        payload = _error_json(api, 400, error.message, param=error.param)
        return web.Response(body=payload, status=400, content_type=JSON_CONTENT_TYPE)

    async def _answer(self, api: Api, request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        raw = await request.read()
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise _BadRequest("the request body must be a JSON object")
            prompt = _PARSERS[api](body)
        except ValueError:
            return self._reject(api, request, raw, _BadRequest("the request body is not valid JSON"), now)
        except _BadRequest as error:
            return self._reject(api, request, raw, error, now)
        plan = self._plan(api, prompt, request, body, now)
        behaviour = plan.behaviour
        if behaviour.latency_s > 0:
            await asyncio.sleep(behaviour.latency_s)
        if behaviour.hang:
            await self._hang()
        if behaviour.body == "truncated":
            return await self._truncated(
                request, plan.status, _SUCCESS[api](prompt, behaviour, next(self._seq))
            )
        payload = self._payload(api, prompt, plan)
        return web.Response(
            body=payload,
            status=plan.status,
            headers=_retry_headers(behaviour.retry_after_s),
            content_type=JSON_CONTENT_TYPE,
        )

    def _payload(self, api: Api, prompt: _Prompt, plan: _Plan) -> bytes:
        behaviour = plan.behaviour
        kind = behaviour.body
        if kind == "ok":
            if 200 <= plan.status < 300:
                return _SUCCESS[api](prompt, behaviour, next(self._seq))
            return _error_json(api, plan.status, _status_message(plan.status))
        if kind == "malformed_json":
            return MALFORMED_JSON
        if kind == "wrong_schema":
            return WRONG_SCHEMA
        if kind == "context_overflow":
            return _context_overflow_json(api, max(prompt.words, plan.window + 1), plan.window)
        return _content_error_json(api)

    async def _hang(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._hanging.add(task)
        try:
            await asyncio.sleep(HANG_S)
        finally:
            if task is not None:
                self._hanging.discard(task)

    @staticmethod
    async def _truncated(request: web.Request, status: int, payload: bytes) -> web.StreamResponse:
        """Promise `payload` in Content-Length, send half of it, then drop the connection."""
        response = web.StreamResponse(status=status)
        response.content_type = JSON_CONTENT_TYPE
        response.content_length = len(payload)
        response.force_close()
        await response.prepare(request)
        await response.write(payload[: len(payload) // 2])
        transport = request.transport
        if transport is not None:
            transport.close()
        return response


# --- command line -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Serve in the foreground until SIGTERM or SIGINT; prints `listening <url>` once ready."""
    parser = argparse.ArgumentParser(prog="python -m gateway.fake_provider", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (see the printed url)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="latency of every answer")
    parser.add_argument("--rpm", type=int, default=None, help="rate limit over all requests")
    parser.add_argument("--burst", type=int, default=None, help="rate-limit bucket size")
    args = parser.parse_args(argv)

    provider = FakeProvider(args.host, args.port, log_limit=0)  # nothing reads the log of this process
    if args.latency_ms > 0:
        provider.set_default(Behaviour(latency_s=args.latency_ms / 1000.0))
    if args.rpm is not None:
        provider.set_rate_limit(args.rpm, args.burst)
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    # Blocked before the server thread starts, so it inherits the mask and only sigwait sees them.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    provider.start()
    try:
        print(f"listening {provider.url}", flush=True)
        signal.sigwait(stop_signals)
    finally:
        provider.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
