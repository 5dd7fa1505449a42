"""The fake provider is a real HTTP server: these tests talk to it with httpx, as the gateway would."""

from __future__ import annotations

import base64
import json
import math
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.fake_provider import Api, Behaviour, FakeProvider

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
MESSAGES = "/v1/messages"


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


@pytest.fixture(autouse=True)
def clean(provider: FakeProvider) -> None:
    provider.reset()


@pytest.fixture(scope="module")
def client(provider: FakeProvider) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=provider.url, timeout=10.0) as http:
        yield http


def chat(client: httpx.Client, model: str = "gpt-test", text: str = "hello there world") -> httpx.Response:
    return client.post(CHAT, json={"model": model, "messages": [{"role": "user", "content": text}]})


def anthropic(client: httpx.Client, model: str = "claude-test", text: str = "hello there") -> httpx.Response:
    body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": text}]}
    return client.post(MESSAGES, json=body)


def call(client: httpx.Client, api: Api, model: str, text: str) -> httpx.Response:
    return anthropic(client, model, text) if api == "anthropic" else chat(client, model, text)


def test_openai_chat_answers_the_real_shape_with_usage_counted_in_words(
    provider: FakeProvider, client: httpx.Client
) -> None:
    body = {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "what is two plus two"}]},
        ],
        "temperature": 0,
        "max_completion_tokens": 16,
    }
    response = client.post(CHAT, json=body, headers={"Authorization": "Bearer sk-test"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    assert answer["object"] == "chat.completion"
    assert answer["id"].startswith("chatcmpl-")
    assert isinstance(answer["created"], int)
    assert answer["model"] == "gpt-test"
    assert answer["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "echo: what is two plus two"},
            "finish_reason": "stop",
        }
    ]
    # 2 words of system + 5 of user in; "echo: what is two plus two" is 6 words out.
    assert answer["usage"] == {
        "prompt_tokens": 7,
        "completion_tokens": 6,
        "total_tokens": 13,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    [seen] = provider.received()
    assert seen.api == "openai_chat"
    assert seen.model == "gpt-test"
    assert seen.status == 200
    assert seen.body == body
    assert seen.headers["authorization"] == "Bearer sk-test"


def test_scripted_usage_passes_through_both_apis(provider: FakeProvider, client: httpx.Client) -> None:
    usage = Behaviour(content="forty two", input_tokens=100, output_tokens=7, cache_read_tokens=40)
    provider.script("gpt-test", usage)
    provider.script("claude-test", Behaviour(content="forty two", input_tokens=100, cache_write_tokens=30))

    openai_answer = chat(client).json()
    assert openai_answer["choices"][0]["message"]["content"] == "forty two"
    assert openai_answer["usage"] == {
        "prompt_tokens": 100,
        "completion_tokens": 7,
        "total_tokens": 107,
        "prompt_tokens_details": {"cached_tokens": 40},
    }
    anthropic_answer = anthropic(client).json()
    assert anthropic_answer["usage"] == {
        "input_tokens": 100,
        "output_tokens": 2,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 30,
    }


def test_json_response_format_gets_json_content_by_default(client: httpx.Client) -> None:
    body = {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "classify me"}],
        "response_format": {"type": "json_object"},
    }
    content = client.post(CHAT, json=body).json()["choices"][0]["message"]["content"]
    assert json.loads(content) == {"echo": "classify me"}


def test_anthropic_answers_the_real_shape(provider: FakeProvider, client: httpx.Client) -> None:
    body = {
        "model": "claude-test",
        "max_tokens": 64,
        "system": [{"type": "text", "text": "you are terse"}],
        "messages": [
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": [{"type": "text", "text": "second question please"}]},
        ],
    }
    response = client.post(MESSAGES, json=body, headers={"anthropic-version": "2023-06-01"})

    assert response.status_code == 200
    answer = response.json()
    assert answer["type"] == "message"
    assert answer["id"].startswith("msg_")
    assert answer["role"] == "assistant"
    assert answer["model"] == "claude-test"
    assert answer["content"] == [{"type": "text", "text": "echo: second question please"}]
    assert answer["stop_reason"] == "end_turn"
    # 3 (system) + 2 + 2 + 3 words in; 4 words out.
    assert answer["usage"] == {
        "input_tokens": 10,
        "output_tokens": 4,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }
    [seen] = provider.received("claude-test")
    assert seen.api == "anthropic"
    assert seen.headers["anthropic-version"] == "2023-06-01"


def test_anthropic_without_max_tokens_is_an_invalid_request(client: httpx.Client) -> None:
    response = client.post(MESSAGES, json={"model": "claude-test", "messages": []})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_request_body_that_is_not_json_is_a_logged_400(provider: FakeProvider, client: httpx.Client) -> None:
    response = client.post(CHAT, content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert provider.count(status=400) == 1


def test_embeddings_are_deterministic_unit_vectors(provider: FakeProvider, client: httpx.Client) -> None:
    def embed(payload: dict[str, Any]) -> dict[str, Any]:
        response = client.post(EMBEDDINGS, json={"model": "embed-test", **payload})
        assert response.status_code == 200
        answer: dict[str, Any] = response.json()
        return answer

    first = embed({"input": ["alpha beta", "gamma"]})
    again = embed({"input": "alpha beta"})
    wide = embed({"input": "alpha beta", "dimensions": 32})

    assert first["object"] == "list"
    assert first["model"] == "embed-test"
    assert first["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert [item["index"] for item in first["data"]] == [0, 1]
    assert all(item["object"] == "embedding" for item in first["data"])
    alpha, gamma = (item["embedding"] for item in first["data"])
    assert len(alpha) == 8
    assert len(wide["data"][0]["embedding"]) == 32
    assert again["data"][0]["embedding"] == alpha
    assert gamma != alpha
    for vector in (alpha, gamma, wide["data"][0]["embedding"]):
        assert math.isclose(math.hypot(*vector), 1.0, rel_tol=1e-9)

    packed = embed({"input": "alpha beta", "encoding_format": "base64"})["data"][0]["embedding"]
    decoded = struct.unpack("<8f", base64.b64decode(packed))
    assert decoded == pytest.approx(alpha, abs=1e-6)
    assert provider.count("embed-test", status=200) == 4


def test_script_is_consumed_in_order_per_model(provider: FakeProvider, client: httpx.Client) -> None:
    provider.script("gpt-a", Behaviour(status=429, retry_after_s=1.5), Behaviour(status=500))
    provider.script("gpt-a", Behaviour(content="third time lucky"))

    limited = chat(client, "gpt-a")
    other_model = chat(client, "gpt-b")  # gpt-b has no script: it does not take from gpt-a's queue
    failed = chat(client, "gpt-a")
    ok = chat(client, "gpt-a")
    after = chat(client, "gpt-a")

    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "2"
    assert limited.headers["retry-after-ms"] == "1500"
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert other_model.status_code == 200
    assert failed.status_code == 500
    assert "retry-after" not in failed.headers
    assert failed.json()["error"]["type"] == "server_error"
    assert ok.status_code == 200
    assert ok.json()["choices"][0]["message"]["content"] == "third time lucky"
    assert after.json()["choices"][0]["message"]["content"] == "echo: hello there world"
    assert [r.status for r in provider.received("gpt-a")] == [429, 500, 200, 200]


def test_anthropic_error_types_follow_the_status(provider: FakeProvider, client: httpx.Client) -> None:
    provider.script("claude-test", Behaviour(status=529), Behaviour(status=500), Behaviour(status=429))

    overloaded, server, limited = (anthropic(client) for _ in range(3))

    assert overloaded.status_code == 529
    assert overloaded.json()["type"] == "error"
    assert overloaded.json()["error"]["type"] == "overloaded_error"
    assert overloaded.json()["error"]["message"]
    assert server.json()["error"]["type"] == "api_error"
    assert limited.json()["error"]["type"] == "rate_limit_error"


def test_defaults_apply_when_the_queue_is_empty(provider: FakeProvider, client: httpx.Client) -> None:
    provider.set_default(Behaviour(status=503))
    provider.set_default(Behaviour(content="special"), model="gpt-special")
    provider.script("gpt-other", Behaviour(content="scripted"))

    assert chat(client, "gpt-other").json()["choices"][0]["message"]["content"] == "scripted"
    assert chat(client, "gpt-other").status_code == 503
    assert chat(client, "gpt-special").json()["choices"][0]["message"]["content"] == "special"


def test_latency_delays_the_answer(provider: FakeProvider, client: httpx.Client) -> None:
    provider.script("gpt-test", Behaviour(latency_s=0.2))
    started = time.monotonic()
    response = chat(client)
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.19


def test_hang_makes_the_client_time_out(provider: FakeProvider) -> None:
    provider.script("gpt-test", Behaviour(hang=True))
    with httpx.Client(base_url=provider.url, timeout=0.3) as http, pytest.raises(httpx.ReadTimeout):
        chat(http)
    assert provider.count("gpt-test", status=0) == 1


def test_malformed_json_does_not_parse(client: httpx.Client, provider: FakeProvider) -> None:
    provider.script("gpt-test", Behaviour(body="malformed_json"))
    response = chat(client)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_truncated_body_is_a_protocol_error(provider: FakeProvider, client: httpx.Client) -> None:
    provider.script("gpt-test", Behaviour(body="truncated"))
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        chat(client)
    assert chat(client).status_code == 200  # the client recovers on a fresh connection


def test_wrong_schema_is_valid_json_of_the_wrong_shape(provider: FakeProvider, client: httpx.Client) -> None:
    provider.script("claude-test", Behaviour(body="wrong_schema"))
    response = anthropic(client)
    assert response.status_code == 200
    answer = response.json()
    assert "content" not in answer
    assert answer == {"result": "nope"}


@pytest.mark.parametrize("api", ["openai_chat", "anthropic"])
def test_context_window_overflows_automatically(
    provider: FakeProvider, client: httpx.Client, api: Api
) -> None:
    model = "model-small"
    provider.set_context_window(model, 5)
    provider.script(model, Behaviour(content="scripted"))

    overflow = call(client, api, model, "one two three four five six")
    fits = call(client, api, model, "one two three four five")

    assert overflow.status_code == 400
    error = overflow.json()["error"]
    if api == "anthropic":
        assert overflow.json()["type"] == "error"
        assert error["type"] == "invalid_request_error"
        assert error["message"] == "prompt is too long: 6 tokens > 5 maximum"
    else:
        assert error["type"] == "invalid_request_error"
        assert error["code"] == "context_length_exceeded"
        assert error["param"] == "messages"
        assert error["message"].startswith("This model's maximum context length is 5 tokens")
    # The overflowing request did not reach the script: the next one that fits gets it.
    assert fits.status_code == 200
    assert "scripted" in fits.text


def test_scripted_context_and_content_errors(provider: FakeProvider, client: httpx.Client) -> None:
    provider.script("gpt-test", Behaviour(body="context_overflow"), Behaviour(body="content_error"))
    provider.script("claude-test", Behaviour(body="content_error"))

    context, content = chat(client), chat(client)
    claude = anthropic(client)

    assert context.status_code == content.status_code == claude.status_code == 400
    assert context.json()["error"]["code"] == "context_length_exceeded"
    assert content.json()["error"]["type"] == "invalid_request_error"
    assert content.json()["error"]["code"] != "context_length_exceeded"
    assert claude.json()["error"]["type"] == "invalid_request_error"
    assert "prompt is too long" not in claude.json()["error"]["message"]


def test_rate_limit_answers_429_past_the_burst(provider: FakeProvider, client: httpx.Client) -> None:
    # 60 rpm refills one token a second, so three back-to-back requests cannot earn a refill.
    provider.set_rate_limit(rpm=60, burst=2)
    provider.script("gpt-test", Behaviour(content="a"), Behaviour(content="b"), Behaviour(content="c"))

    statuses = [chat(client) for _ in range(3)]

    assert [r.status_code for r in statuses] == [200, 200, 429]
    throttled = statuses[2]
    assert 0 < int(throttled.headers["retry-after-ms"]) <= 1000
    assert throttled.headers["retry-after"] == "1"
    assert throttled.json()["error"]["code"] == "rate_limit_exceeded"
    # Throttled requests are logged but consume no script: "c" is still queued.
    assert provider.count(status=200) == 2
    assert provider.count(status=429) == 1
    provider.set_rate_limit(None)
    assert chat(client).json()["choices"][0]["message"]["content"] == "c"


def test_rate_limit_refills_by_the_time_retry_after_says(
    provider: FakeProvider, client: httpx.Client
) -> None:
    provider.set_rate_limit(rpm=6000, burst=1)  # 100 tokens a second
    assert chat(client).status_code == 200
    throttled = chat(client)
    assert throttled.status_code == 429
    wait_ms = int(throttled.headers["retry-after-ms"])
    assert 0 < wait_ms <= 10
    time.sleep(wait_ms / 1000)
    assert chat(client).status_code == 200


def test_counts_and_reset(provider: FakeProvider, client: httpx.Client) -> None:
    provider.script("gpt-a", Behaviour(status=500), Behaviour(status=500))
    provider.set_default(Behaviour(status=502))
    provider.set_context_window("gpt-b", 1)
    chat(client, "gpt-a")
    chat(client, "gpt-b")
    anthropic(client)

    assert provider.count() == 3
    assert provider.count("gpt-a") == 1
    assert provider.count(status=500) == 1
    assert provider.count(status=400) == 1  # gpt-b's context overflow
    assert provider.count(status=502) == 1
    assert provider.count("gpt-a", status=400) == 0
    log = provider.received()
    log.clear()  # a copy: the provider's log is untouched
    assert len(provider.received()) == 3

    provider.reset()

    assert provider.count() == 0
    assert provider.received() == []
    assert chat(client, "gpt-a").status_code == 200  # the script, default and window are gone
    assert chat(client, "gpt-b").status_code == 200


def test_stop_ends_hanging_answers_and_closes_the_port() -> None:
    fake = FakeProvider().start()
    url = fake.url
    fake.script("gpt-test", Behaviour(hang=True))
    with httpx.Client(base_url=url, timeout=0.2) as http:
        with pytest.raises(httpx.ReadTimeout):
            chat(http)
        fake.stop()
        with pytest.raises(httpx.ConnectError):
            chat(http)
    fake.stop()  # twice is fine


def test_command_line_serves_until_sigterm() -> None:
    command = [sys.executable, "-m", "gateway.fake_provider", "--port", "0", "--rpm", "6000", "--burst", "5"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("listening http://127.0.0.1:")
            with httpx.Client(base_url=line.split()[1], timeout=10.0) as http:
                assert chat(http).json()["choices"][0]["message"]["content"] == "echo: hello there world"
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
