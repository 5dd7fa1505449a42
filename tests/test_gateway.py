"""The gateway's rules, each against a real HTTP server on loopback (gateway/fake_provider.py) that
speaks the OpenAI and Anthropic wire formats with scripted failures."""

from __future__ import annotations

import asyncio
import json
import os
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.breaker import BreakerState, CircuitBreaker
from gateway.errors import AllRoutesFailed, BudgetExceeded, GatewayError, NoEligibleRoute
from gateway.fake_provider import Behaviour, FakeProvider
from gateway.gateway import Gateway
from gateway.policy import BreakerConfig, PolicyError, PolicyStore, load_policy, parse_policy
from gateway.pricing import load_prices
from gateway.providers.base import Message, Secrets
from streams.config import PROJECT_ROOT
from tests.conftest import wait_until

PRICES = """
version = "test-1"
[models."fake/cheap"]
input = "1.00"
output = "2.00"
cache_read = "0.10"
[models."fake/big"]
input = "3.00"
output = "6.00"
[models."fake/small"]
input = "0.50"
output = "1.00"
[models."claude/haiku"]
input = "0.80"
output = "4.00"
cache_read = "0.08"
cache_write = "1.00"
"""


def write_policy(path: Path, fake: FakeProvider, tasks: str, extra: str = "", provider: str = "") -> Path:
    path.write_text(
        f"""
version = "t1"
[providers.fake]
kind = "openai"
base_url = "{fake.url}/v1"
api_key_env = "RIVERBED_TEST_KEY"
timeout_s = 5
{provider}
[providers.claude]
kind = "anthropic"
base_url = "{fake.url}"
timeout_s = 5
[retry]
base_s = 0.01
cap_s = 0.05
{extra}
{tasks}
""",
        encoding="utf-8",
    )
    return path


def make_gateway(
    tmp_path: Path, fake: FakeProvider, tasks: str, extra: str = "", provider: str = "", **kwargs: Any
) -> Gateway:
    prices_file = tmp_path / "prices.toml"
    prices_file.write_text(PRICES, encoding="utf-8")
    policy = PolicyStore(write_policy(tmp_path / "routes.toml", fake, tasks, extra, provider))
    return Gateway(policy=policy, prices=load_prices(prices_file), **kwargs)


CHAT_FALLBACK = """
[tasks.draft_reply]
deadline_s = 10
routes = [
  { provider = "fake", model = "cheap", retries = 2 },
  { provider = "fake", model = "big", retries = 0 },
]
"""


async def test_retries_then_falls_back_in_order_with_a_trace_per_attempt(
    tmp_path: Path, fake: FakeProvider
) -> None:
    fake.set_default(Behaviour(status=500), model="cheap")
    gateway = make_gateway(tmp_path, fake, CHAT_FALLBACK)
    traces: list[dict[str, Any]] = []

    response = await gateway.complete("draft_reply", "hello there", tenant="acme", traces=traces)

    assert response.model == "big" and response.output == "echo: hello there"
    assert [r.model for r in fake.received()] == ["cheap", "cheap", "cheap", "big"]
    assert [(t["route"], t["call_attempt"], t["status"]) for t in traces] == [
        ("fake/cheap", 1, "error"),
        ("fake/cheap", 2, "error"),
        ("fake/cheap", 3, "error"),
        ("fake/big", 4, "ok"),
    ]
    assert {t["error_class"] for t in traces[:3]} == {"ProviderUnavailable"}
    assert len({t["trace_id"] for t in traces}) == 4
    assert [t["fell_back"] for t in traces] == [False, False, False, True]
    assert response.attempts == 4
    await gateway.aclose()


async def test_only_the_first_hop_off_the_first_route_is_marked_as_the_fallback(
    tmp_path: Path, fake: FakeProvider
) -> None:
    """One marked call per invocation that fell back, however many hops: ClickHouse counts
    fallbacks with countIf(fell_back) instead of grouping every call by event."""
    fake.set_default(Behaviour(status=500), model="cheap")
    fake.set_default(Behaviour(status=500), model="mid")
    tasks = """
[tasks.draft_reply]
deadline_s = 10
routes = [
  { provider = "fake", model = "cheap", retries = 0 },
  { provider = "fake", model = "mid", retries = 1 },
  { provider = "fake", model = "big", retries = 0 },
]
"""
    gateway = make_gateway(tmp_path, fake, tasks)
    traces: list[dict[str, Any]] = []

    await gateway.complete("draft_reply", "hello", tenant="acme", traces=traces)

    assert [(t["route"], t["fell_back"]) for t in traces] == [
        ("fake/cheap", False),
        ("fake/mid", True),
        ("fake/mid", False),
        ("fake/big", False),
    ]
    await gateway.aclose()


async def test_retry_after_is_honoured(tmp_path: Path, fake: FakeProvider) -> None:
    fake.script("cheap", Behaviour(status=429, retry_after_s=0.4))
    gateway = make_gateway(tmp_path, fake, CHAT_FALLBACK)

    response = await gateway.complete("draft_reply", "hi", tenant="acme")

    first, second = fake.received("cheap")
    assert response.model == "cheap"
    assert second.received_at - first.received_at >= 0.4
    assert fake.count("big") == 0
    await gateway.aclose()


async def test_content_error_fails_fast_without_fallback(tmp_path: Path, fake: FakeProvider) -> None:
    fake.script("cheap", Behaviour(body="content_error"))
    gateway = make_gateway(tmp_path, fake, CHAT_FALLBACK)

    with pytest.raises(AllRoutesFailed) as caught:
        await gateway.complete("draft_reply", "bad request", tenant="acme")

    assert fake.count() == 1
    assert caught.value.retryable is False
    assert [a.error_class for a in caught.value.attempts] == ["ContentRejected"]
    await gateway.aclose()


@pytest.mark.parametrize(
    ("behaviour", "error_class"),
    [
        (Behaviour(body="malformed_json"), "MalformedResponse"),
        (Behaviour(body="wrong_schema"), "MalformedResponse"),
        (Behaviour(status=401), "AuthFailed"),
    ],
)
async def test_broken_answers_fall_back_without_retrying(
    tmp_path: Path, fake: FakeProvider, behaviour: Behaviour, error_class: str
) -> None:
    fake.script("cheap", behaviour)
    gateway = make_gateway(tmp_path, fake, CHAT_FALLBACK)
    traces: list[dict[str, Any]] = []

    response = await gateway.complete("draft_reply", "x", tenant="acme", traces=traces)

    assert response.model == "big"
    assert fake.count("cheap") == 1
    assert traces[0]["error_class"] == error_class
    await gateway.aclose()


async def test_truncated_body_is_retried(tmp_path: Path, fake: FakeProvider) -> None:
    fake.script("cheap", Behaviour(body="truncated"))
    gateway = make_gateway(tmp_path, fake, CHAT_FALLBACK)

    response = await gateway.complete("draft_reply", "x", tenant="acme")

    assert response.model == "cheap" and fake.count("cheap") == 2
    await gateway.aclose()


async def test_a_hanging_provider_times_out_per_attempt_and_falls_back(
    tmp_path: Path, fake: FakeProvider
) -> None:
    fake.set_default(Behaviour(hang=True), model="cheap")
    tasks = """
[tasks.draft_reply]
deadline_s = 5
routes = [
  { provider = "fake", model = "cheap", retries = 1, timeout_s = 0.2 },
  { provider = "fake", model = "big", retries = 0 },
]
"""
    gateway = make_gateway(tmp_path, fake, tasks)
    traces: list[dict[str, Any]] = []
    started = time.monotonic()

    response = await gateway.complete("draft_reply", "x", tenant="acme", traces=traces)

    assert response.model == "big"
    assert [t["error_class"] for t in traces[:2]] == ["ProviderTimeout", "ProviderTimeout"]
    assert time.monotonic() - started < 4  # two 0.2 s attempts, not the provider's 5 s timeout
    await gateway.aclose()


async def test_deadline_bounds_the_whole_call(tmp_path: Path, fake: FakeProvider) -> None:
    fake.set_default(Behaviour(hang=True))
    tasks = """
[tasks.draft_reply]
deadline_s = 0.5
routes = [{ provider = "fake", model = "cheap", retries = 5 }, { provider = "fake", model = "big" }]
"""
    gateway = make_gateway(tmp_path, fake, tasks)
    started = time.monotonic()

    with pytest.raises(AllRoutesFailed) as caught:
        await gateway.complete("draft_reply", "x", tenant="acme")

    assert time.monotonic() - started < 2
    assert caught.value.retryable is True
    assert "DeadlineExceeded" in {a.error_class for a in caught.value.attempts}
    await gateway.aclose()


async def test_context_overflow_moves_to_a_larger_context_route(tmp_path: Path, fake: FakeProvider) -> None:
    fake.set_context_window("small", 5)
    tasks = """
[tasks.draft_reply]
routes = [
  { provider = "fake", model = "small", context_window = 8000 },
  { provider = "fake", model = "cheap", context_window = 4000 },
  { provider = "fake", model = "big", context_window = 128000 },
]
"""
    gateway = make_gateway(tmp_path, fake, tasks)
    traces: list[dict[str, Any]] = []

    response = await gateway.complete(
        "draft_reply", "one two three four five six seven", tenant="a", traces=traces
    )

    assert response.model == "big"
    assert fake.count("cheap") == 0  # smaller window than the one that overflowed: skipped
    assert traces[0]["error_class"] == "ContextOverflow"
    await gateway.aclose()


async def test_breaker_opens_skips_the_route_then_half_opens(tmp_path: Path, fake: FakeProvider) -> None:
    fake.set_default(Behaviour(status=503), model="cheap")
    breaker = """
[breaker]
window_s = 60
min_calls = 4
failure_ratio = 0.5
open_s = 0.3
half_open_probes = 1
"""
    tasks = """
[tasks.draft_reply]
routes = [
  { provider = "fake", model = "cheap", retries = 0 },
  { provider = "fake", model = "big", retries = 0 },
]
"""
    gateway = make_gateway(tmp_path, fake, tasks, extra=breaker)
    for _ in range(4):
        await gateway.complete("draft_reply", "x", tenant="a")
    assert gateway.breaker_state("fake/cheap") is BreakerState.OPEN

    traces: list[dict[str, Any]] = []
    await gateway.complete("draft_reply", "y", tenant="a", traces=traces)
    assert fake.count("cheap") == 4  # skipped while open
    assert traces[0]["error_class"] == "BreakerOpen" and traces[0]["breaker_state"] == "open"

    fake.set_default(Behaviour(), model="cheap")
    wait_until(lambda: gateway.breaker_state("fake/cheap") is BreakerState.HALF_OPEN, 5, "half-open")
    response = await gateway.complete("draft_reply", "z", tenant="a")
    assert response.model == "cheap"
    assert gateway.breaker_state("fake/cheap") is BreakerState.CLOSED
    await gateway.aclose()


def test_breaker_trips_on_ratio_not_streak() -> None:
    now = [0.0]
    breaker = CircuitBreaker(
        BreakerConfig(window_s=10, min_calls=10, failure_ratio=0.5, open_s=5), clock=lambda: now[0]
    )
    for i in range(9):  # alternate: never two failures in a row
        breaker.record(ok=i % 2 == 0)
    assert breaker.state is BreakerState.CLOSED
    breaker.record(ok=False)  # 5 of 10 failed
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    now[0] = 5.0
    assert breaker.allow() and not breaker.allow()  # one probe only
    breaker.record(ok=False)
    assert breaker.state is BreakerState.OPEN
    now[0] = 10.0
    assert breaker.allow()
    breaker.record(ok=True)
    assert breaker.state is BreakerState.CLOSED
    now[0] = 30.0  # old outcomes leave the window
    for _ in range(9):
        breaker.record(ok=False)
    assert breaker.state is BreakerState.CLOSED  # below min_calls


async def test_budget_never_overshoots_under_200_concurrent_calls(tmp_path: Path, fake: FakeProvider) -> None:
    # each answer: 10 input + 20 output tokens on fake/cheap = (10*1 + 20*2)/1e6 = $0.00005
    fake.set_default(Behaviour(latency_s=0.05, input_tokens=10, output_tokens=20))
    budgets = """
[budgets]
period = "day"
default_usd = "0.002"
"""
    tasks = """
[tasks.draft_reply]
routes = [{ provider = "fake", model = "cheap", max_tokens = 20 }]
"""
    gateway = make_gateway(tmp_path, fake, tasks, extra=budgets)

    async def one(i: int) -> Any:
        try:
            return await gateway.complete("draft_reply", f"question {i:03d}", tenant="acme")
        except BudgetExceeded as exc:
            return exc

    outcomes = await asyncio.gather(*(one(i) for i in range(200)))

    answered = [o for o in outcomes if not isinstance(o, BudgetExceeded)]
    refused = [o for o in outcomes if isinstance(o, BudgetExceeded)]
    spent = sum((o.cost_usd for o in answered), Decimal(0))
    assert spent <= Decimal("0.002")
    assert gateway.budget.committed("acme") == spent  # every reservation settled to the actual cost
    assert refused and answered
    assert fake.count() == len(answered)  # a refused call never reached the provider
    # all 200 reserve before any settles; the worst case per call is (12 prompt bytes * $1 + 20 * $2)
    # / 1e6 = $0.000052, so exactly floor(0.002 / 0.000052) = 38 fit
    assert len(answered) == 38
    # settling released the over-reservation: the next call fits again
    late = await gateway.complete("draft_reply", "question 999", tenant="acme")
    assert gateway.budget.committed("acme") == spent + late.cost_usd <= Decimal("0.002")
    # another tenant has its own budget
    other = await gateway.complete("draft_reply", "question 000", tenant="globex")
    assert other.cost_usd == Decimal("0.00005")
    await gateway.aclose()


async def test_exact_cache_is_tenant_scoped(tmp_path: Path, fake: FakeProvider) -> None:
    tasks = """
[tasks.draft_reply]
cache_ttl_s = 60
routes = [{ provider = "fake", model = "cheap" }]
"""
    gateway = make_gateway(tmp_path, fake, tasks)
    first = await gateway.complete("draft_reply", "what is my balance", tenant="acme")
    traces: list[dict[str, Any]] = []
    again = await gateway.complete("draft_reply", "what is my balance", tenant="acme", traces=traces)
    other_tenant = await gateway.complete("draft_reply", "what is my balance", tenant="globex")

    assert first.cache_status == "miss" and again.cache_status == "hit"
    assert again.output == first.output and again.cost_usd == 0
    assert traces[0]["cache_status"] == "hit" and traces[0]["cost_usd"] == 0
    assert other_tenant.cache_status == "miss"
    assert fake.count() == 2
    await gateway.aclose()


async def test_fifty_identical_concurrent_requests_make_one_upstream_call(
    tmp_path: Path, fake: FakeProvider
) -> None:
    fake.set_default(Behaviour(latency_s=0.3))
    tasks = """
[tasks.draft_reply]
routes = [{ provider = "fake", model = "cheap" }]
"""
    gateway = make_gateway(tmp_path, fake, tasks)

    responses = await asyncio.gather(
        *(gateway.complete("draft_reply", "same question", tenant="acme") for _ in range(50))
    )

    assert fake.count() == 1
    assert {r.output for r in responses} == {"echo: same question"}
    assert sorted(r.cache_status for r in responses).count("coalesced") == 49
    await gateway.aclose()


async def test_restricted_data_only_goes_to_local_routes(tmp_path: Path, fake: FakeProvider) -> None:
    gateway = make_gateway(tmp_path, fake, CHAT_FALLBACK)

    with pytest.raises(NoEligibleRoute):
        await gateway.complete("draft_reply", "salary of bob", tenant="acme", sensitivity="restricted")

    assert fake.count() == 0
    await gateway.aclose()


async def test_ab_split_is_weighted_and_stable_per_event(tmp_path: Path, fake: FakeProvider) -> None:
    from gateway.gateway import ad_hoc_context

    tasks = """
[tasks.draft_reply]
routes = [
  { provider = "fake", model = "cheap", weight = 80 },
  { provider = "fake", model = "big", weight = 20 },
]
"""
    gateway = make_gateway(tmp_path, fake, tasks)
    contexts = [ad_hoc_context("acme", "draft_reply") for _ in range(400)]
    models = [(await gateway.complete("draft_reply", "q", tenant="acme", context=c)).model for c in contexts]
    again = [
        (await gateway.complete("draft_reply", "q", tenant="acme", context=c)).model for c in contexts[:50]
    ]

    share = models.count("cheap") / len(models)
    assert 0.7 < share < 0.9
    assert again == models[:50]
    await gateway.aclose()


async def test_anthropic_wire_format_and_cache_token_pricing(tmp_path: Path, fake: FakeProvider) -> None:
    fake.set_default(
        Behaviour(
            content="hi", input_tokens=100, output_tokens=10, cache_read_tokens=1000, cache_write_tokens=50
        )
    )
    tasks = """
[tasks.draft_reply]
system = "Be brief."
routes = [{ provider = "claude", model = "haiku", max_tokens = 64 }]
"""
    gateway = make_gateway(tmp_path, fake, tasks)

    response = await gateway.complete("draft_reply", [Message("user", "hello")], tenant="acme")

    (request,) = fake.received()
    assert request.api == "anthropic" and request.body["system"] == "Be brief."
    assert request.body["max_tokens"] == 64
    assert response.input_tokens == 1150 and response.cache_read_tokens == 1000
    # hand-computed: (100 * 0.80 + 1000 * 0.08 + 50 * 1.00 + 10 * 4.00) / 1e6
    assert response.cost_usd == Decimal("0.00025")
    await gateway.aclose()


def test_price_math_against_hand_computed_figures(tmp_path: Path) -> None:
    prices_file = tmp_path / "prices.toml"
    prices_file.write_text(PRICES, encoding="utf-8")
    prices = load_prices(prices_file)
    # 1,000,000 input of which 400,000 cached, 500,000 output on fake/cheap:
    # 600,000 * $1/M + 400,000 * $0.10/M + 500,000 * $2/M = 0.6 + 0.04 + 1.0
    assert prices.cost("fake/cheap", 1_000_000, 500_000, cache_read_tokens=400_000) == Decimal("1.64")
    # no cache_write price given: billed at the input price
    assert prices.cost("fake/big", 1000, 0, cache_write_tokens=1000) == Decimal("0.003")
    assert prices.cost("nobody/unknown", 10, 10) is None
    shipped = load_prices(PROJECT_ROOT / "gateway/prices.toml")
    assert shipped.cost("local/any-new-artifact", 1000, 10) == Decimal(0)  # the provider-wide default
    assert shipped.cost("openai/not-listed", 1000, 10) is None  # no default for paid providers


async def test_unknown_price_is_reported_unknown_not_zero(tmp_path: Path, fake: FakeProvider) -> None:
    tasks = """
[tasks.draft_reply]
routes = [{ provider = "fake", model = "mystery" }]
"""
    gateway = make_gateway(tmp_path, fake, tasks)
    traces: list[dict[str, Any]] = []
    response = await gateway.complete("draft_reply", "x", tenant="acme", traces=traces)
    assert response.cost_usd is None and traces[0]["cost_usd"] is None
    await gateway.aclose()


async def test_structured_output_is_validated_and_a_bad_answer_falls_back(
    tmp_path: Path, fake: FakeProvider
) -> None:
    schema = {
        "type": "object",
        "properties": {"label": {"type": "string"}, "confidence": {"type": "number"}},
        "required": ["label", "confidence"],
    }
    fake.script("cheap", Behaviour(content='{"label": "refund"}'))
    fake.script("big", Behaviour(content='{"label": "refund", "confidence": 0.9}'))
    gateway = make_gateway(tmp_path, fake, CHAT_FALLBACK)
    traces: list[dict[str, Any]] = []

    response = await gateway.complete("draft_reply", "refund?", tenant="a", json_schema=schema, traces=traces)

    assert response.output == {"label": "refund", "confidence": 0.9}
    assert traces[0]["error_class"] == "MalformedResponse"
    assert fake.received("cheap")[0].body["response_format"]["type"] == "json_schema"
    await gateway.aclose()


async def test_rate_limit_queues_a_spike_instead_of_causing_429s(tmp_path: Path, fake: FakeProvider) -> None:
    fake.set_rate_limit(rpm=600, burst=2)  # 10 per second
    tasks = """
[tasks.draft_reply]
routes = [{ provider = "fake", model = "cheap", retries = 0 }]
"""
    # the gateway keeps 20 % under the provider's rate and its bursts (1 request) under the provider's
    # (2): requests reach the provider with network jitter that can squeeze two together
    gateway = make_gateway(tmp_path, fake, tasks, provider="rpm = 480\nburst_s = 0.1")

    responses = await asyncio.gather(
        *(gateway.complete("draft_reply", f"q{i}", tenant="a") for i in range(20))
    )

    assert len(responses) == 20
    assert fake.count(status=429) == 0
    await gateway.aclose()


async def test_api_key_goes_to_the_provider_and_nowhere_else(
    tmp_path: Path, fake: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RIVERBED_TEST_KEY", "sk-test-very-secret")
    gateway = make_gateway(tmp_path, fake, CHAT_FALLBACK)
    traces: list[dict[str, Any]] = []
    fake.script("cheap", Behaviour(status=401))

    await gateway.complete("draft_reply", "x", tenant="a", traces=traces)

    assert {r.headers["authorization"] for r in fake.received()} == {"Bearer sk-test-very-secret"}
    assert "sk-test-very-secret" not in json.dumps(traces, default=str)
    assert "sk-test" not in repr(Secrets().get("RIVERBED_TEST_KEY"))
    await gateway.aclose()


def test_secrets_file_is_used_when_the_environment_has_no_key(tmp_path: Path) -> None:
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text('RIVERBED_FILE_KEY = "from-file"\n', encoding="utf-8")
    assert "RIVERBED_FILE_KEY" not in os.environ
    key = Secrets(secrets_file).get("RIVERBED_FILE_KEY")
    assert key is not None and key.get_secret_value() == "from-file"


# -------------------------------------------------------------------------------------- policy file


def test_invalid_policy_names_the_file_and_the_key(tmp_path: Path) -> None:
    bad = """
version = "x"
[providers.remote]
kind = "openai"
[tasks.summarize]
routes = [{ provider = "nowhere" }]
"""
    with pytest.raises(PolicyError, match=r"routes\.toml: providers\.remote: .*needs base_url"):
        path = tmp_path / "routes.toml"
        path.write_text(bad, encoding="utf-8")
        load_policy(path)
    with pytest.raises(PolicyError, match=r"unknown provider 'nowhere'"):
        parse_policy(bad.replace('kind = "openai"', 'kind = "openai"\nbase_url = "http://x"'))
    with pytest.raises(PolicyError, match=r"tasks\.x\.routes\.0\.retries"):
        parse_policy(
            'version="1"\n[providers.local]\nkind="local"\n[tasks.x]\nroutes=[{provider="local", retries=-1}]'
        )
    with pytest.raises(PolicyError, match="not valid TOML"):
        parse_policy("version = ")


def test_local_provider_cannot_serve_unknown_tasks() -> None:
    with pytest.raises(PolicyError, match="local provider cannot serve task 'draft_reply'"):
        parse_policy(
            'version="1"\n[providers.local]\nkind="local"\n[tasks.draft_reply]\nroutes=[{provider="local"}]'
        )


def test_policy_reloads_on_change_and_keeps_the_last_good_one(tmp_path: Path, fake: FakeProvider) -> None:
    path = write_policy(tmp_path / "routes.toml", fake, CHAT_FALLBACK)
    store = PolicyStore(path, check_every_s=0)
    assert store.policy.task("draft_reply").routes[0].model == "cheap"
    fingerprint = store.fingerprint

    write_policy(path, fake, CHAT_FALLBACK.replace('model = "cheap"', 'model = "small"'))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert store.policy.task("draft_reply").routes[0].model == "small"
    assert store.fingerprint != fingerprint

    path.write_text("version = ", encoding="utf-8")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2_000_000))
    assert store.policy.task("draft_reply").routes[0].model == "small"


def test_shipped_policy_serves_every_workflow_task_locally() -> None:
    policy = load_policy()
    for task in ("embed", "classify_intent", "classify_topic", "extract", "summarize"):
        assert policy.providers[policy.task(task).routes[0].provider].local


async def test_every_failure_is_a_gateway_error(tmp_path: Path, fake: FakeProvider) -> None:
    """Callers catch one base class: whatever fails, it is a GatewayError with a retryable flag."""
    fake.set_default(Behaviour(status=503))
    gateway = make_gateway(tmp_path, fake, CHAT_FALLBACK)
    with pytest.raises(GatewayError) as caught:
        await gateway.complete("draft_reply", "x", tenant="a")
    assert caught.value.retryable is True
    assert "fake/cheap#1 ProviderUnavailable" in str(caught.value)
    await gateway.aclose()


# ---------------------------------------------------------------------------------- semantic cache


@pytest.fixture(scope="module")
def embedder() -> Any:
    from gateway.local.embedder import Embedder

    return Embedder()


async def test_semantic_cache_reuses_close_prompts_within_one_tenant_and_task_only(
    tmp_path: Path, fake: FakeProvider, embedder: Any
) -> None:
    from gateway.semantic_cache import SemanticCache
    from sinks.vectors import EdgeVectorStore

    tasks = """
[tasks.draft_reply]
semantic_threshold = 0.9
routes = [{ provider = "fake", model = "cheap" }]
[tasks.summarize_ticket]
semantic_threshold = 0.9
routes = [{ provider = "fake", model = "cheap" }]
"""
    store = EdgeVectorStore(tmp_path / "semcache", "gateway_cache")
    semantic = SemanticCache(store, embedder.embed, embedder.dimensions)
    gateway = make_gateway(tmp_path, fake, tasks, semantic_cache=semantic)

    first = await gateway.complete("draft_reply", "How do I reset my online banking password?", tenant="acme")
    close = await gateway.complete("draft_reply", "how do I reset my online banking password", tenant="acme")
    other_tenant = await gateway.complete(
        "draft_reply", "How do I reset my online banking password?", tenant="globex"
    )
    other_task = await gateway.complete(
        "summarize_ticket", "How do I reset my online banking password?", tenant="acme"
    )
    unrelated = await gateway.complete("draft_reply", "My card was swallowed by the ATM", tenant="acme")

    assert first.cache_status == "miss"
    assert close.cache_status == "semantic_hit" and close.output == first.output
    assert other_tenant.cache_status == "miss"
    assert other_task.cache_status == "miss"
    assert unrelated.cache_status == "miss"
    assert fake.count() == 4
    await gateway.aclose()
    store.close()


async def test_traces_carry_masked_previews_never_raw_pii(tmp_path: Path, fake: FakeProvider) -> None:
    fake.set_default(Behaviour(content="I will email jane@example.com and refund card 4111 1111 1111 1111"))
    gateway = make_gateway(tmp_path, fake, CHAT_FALLBACK)
    traces: list[dict[str, Any]] = []

    await gateway.complete(
        "draft_reply", "I am jane@example.com, IBAN DE89370400440532013000", tenant="a", traces=traces
    )

    (trace,) = traces
    blob = json.dumps(traces, default=str)
    for secret in ("jane@example.com", "4111 1111 1111 1111", "DE89370400440532013000"):
        assert secret not in blob
    assert "[EMAIL]" in trace["input_preview"] and "[IBAN]" in trace["input_preview"]
    assert "[CARD]" in trace["output_preview"]
    assert trace["redaction_count"] == 4
    await gateway.aclose()


async def test_remote_routes_answer_workflow_tasks_with_the_local_tiers_types(
    tmp_path: Path, fake: FakeProvider
) -> None:
    """A workflow never learns which route answered: remote answers become the same typed outputs."""
    from gateway.gateway import ad_hoc_context
    from gateway.models import Entity, ModelRequest, Prediction

    fake.set_default(Behaviour(content='{"label": "card_arrival", "confidence": 0.8}'), model="intent")
    fake.set_default(Behaviour(content='{"entities": [{"label": "MONEY", "text": "$40"}]}'), model="ner")
    fake.set_default(Behaviour(content='{"label": "card_arrival"}'), model="sloppy")
    tasks = """
[tasks.classify_intent]
routes = [{ provider = "fake", model = "sloppy" }, { provider = "fake", model = "intent" }]
[tasks.extract]
routes = [{ provider = "fake", model = "ner" }]
[tasks.embed]
routes = [{ provider = "fake", model = "emb" }]
"""
    gateway = make_gateway(tmp_path, fake, tasks)
    text = "Where is my card? I paid $40 for it"

    def batch(task: str) -> list[ModelRequest]:
        return [ModelRequest(task, ad_hoc_context("acme", task), text) for _ in range(3)]

    traces: list[dict[str, Any]] = []
    intents = await gateway.run(batch("classify_intent"), traces)
    entities = await gateway.run(batch("extract"), traces)
    vectors = await gateway.run(batch("embed"), traces)

    for response in intents:
        assert not isinstance(response, GatewayError)
        assert response.output == Prediction("card_arrival", 0.8, (("card_arrival", 0.8),))
        assert response.model == "intent"  # the sloppy answer failed the contract's schema
    for response in entities:
        assert not isinstance(response, GatewayError)
        assert response.output == [Entity("MONEY", "$40", text.index("$40"), text.index("$40") + 3)]
    for response in vectors:
        assert not isinstance(response, GatewayError)
        assert response.output.shape == (1, 8) and str(response.output.dtype) == "float32"
    assert "confidence" in json.dumps(fake.received("intent")[0].body["response_format"])
    await gateway.aclose()


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_both_transports_classify_wire_failures_alike(
    tmp_path: Path, fake: FakeProvider, transport: str
) -> None:
    fake.script(
        "cheap",
        Behaviour(body="truncated"),
        Behaviour(hang=True),
        Behaviour(status=429, retry_after_s=0.05),
        Behaviour(status=502),
        Behaviour(body="malformed_json"),
    )
    tasks = """
[tasks.draft_reply]
routes = [
  { provider = "fake", model = "cheap", retries = 4, timeout_s = 0.3 },
  { provider = "fake", model = "big" },
]
[tasks.warm_up]
routes = [{ provider = "fake", model = "warm" }]
"""
    gateway = make_gateway(tmp_path, fake, tasks, provider=f'transport = "{transport}"')
    traces: list[dict[str, Any]] = []
    # The client's first request opens its connection (and httpx imports its HTTP/2 stack): on a
    # busy machine that alone can outlast the 0.3 s attempt timeout and turn the truncated answer
    # into a timeout. So one answered call first, on another model of the same provider.
    await gateway.complete("warm_up", "x", tenant="a", traces=[])

    response = await gateway.complete("draft_reply", "x", tenant="a", traces=traces)

    assert [t["error_class"] for t in traces] == [
        "ProviderUnavailable",
        "ProviderTimeout",
        "RateLimited",
        "ProviderUnavailable",
        "MalformedResponse",
        None,
    ]
    assert response.model == "big"
    await gateway.aclose()


EMBED_BATCH = """
[tasks.embed]
deadline_s = 10
routes = [{ provider = "fake", model = "cheap", retries = 1 }]
"""
TICKETS = [
    "my card has still not arrived",
    "refund the double charge on my account please",
    "pin blocked",
    "why is the exchange rate on my transfer so poor today",
    "top up failed",
]


def embed_requests(texts: list[str], tenants: list[str]) -> list[Any]:
    from gateway.gateway import ad_hoc_context
    from gateway.models import ModelRequest

    return [
        ModelRequest("embed", ad_hoc_context(tenant, "embed"), text)
        for text, tenant in zip(texts, tenants, strict=True)
    ]


async def test_a_batch_of_embeddings_is_one_request_per_tenant_with_a_trace_per_event(
    tmp_path: Path, fake: FakeProvider
) -> None:
    gateway = make_gateway(tmp_path, fake, EMBED_BATCH)
    tenants = ["acme", "globex", "acme", "globex", "acme"]
    requests = embed_requests(TICKETS, tenants)
    traces: list[dict[str, Any]] = []

    answers = await gateway.run(requests, traces)

    batches = fake.received("cheap")
    assert sorted(len(r.body["input"]) for r in batches) == [2, 3]  # one request per tenant
    assert all(r.status == 200 for r in batches)
    for request, answer in zip(requests, answers, strict=True):
        assert not isinstance(answer, GatewayError)
        (alone,) = await gateway.run([request], [])  # one request of its own: the same vector
        assert not isinstance(alone, GatewayError)
        assert answer.output.shape == (1, 8) and (answer.output == alone.output).all()
    assert sorted(t["event_id"] for t in traces) == sorted(r.context.event_id for r in requests)
    assert len({t["trace_id"] for t in traces}) == len(requests)
    prices = load_prices(tmp_path / "prices.toml")
    for tenant in ("acme", "globex"):
        mine = [t for t in traces if t["tenant_id"] == tenant]
        # the fake bills one token per word: the events' shares add up to the call's bill
        billed = sum(len(text.split()) for text, who in zip(TICKETS, tenants, strict=True) if who == tenant)
        assert sum(t["gen_ai_usage_input_tokens"] for t in mine) == billed
    for trace in traces:
        assert trace["status"] == "ok" and trace["call_attempt"] == 1
        assert trace["cost_usd"] == prices.cost("fake/cheap", trace["gen_ai_usage_input_tokens"], 0)
    # the longest text carries the largest share of its tenant's tokens
    longest = max(range(len(TICKETS)), key=lambda k: len(TICKETS[k]))
    share = {t["event_id"]: t["gen_ai_usage_input_tokens"] for t in traces}
    assert share[requests[longest].context.event_id] == max(share.values())
    await gateway.aclose()


async def test_a_cached_embedding_batch_answers_the_same_batch_again_from_the_cache(
    tmp_path: Path, fake: FakeProvider
) -> None:
    gateway = make_gateway(tmp_path, fake, EMBED_BATCH + "cache_ttl_s = 60\n")
    tenants = ["acme", "globex", "acme", "globex", "acme"]
    first_traces: list[dict[str, Any]] = []
    first = await gateway.run(embed_requests(TICKETS, tenants), first_traces)
    sent = len(fake.received("cheap"))
    again_traces: list[dict[str, Any]] = []
    again = await gateway.run(embed_requests(TICKETS, tenants), again_traces)

    assert sent == 2 and len(fake.received("cheap")) == sent  # no request the second time
    assert [t["cache_status"] for t in first_traces] == ["miss"] * len(TICKETS)
    assert [t["cache_status"] for t in again_traces] == ["hit"] * len(TICKETS)
    for before, after in zip(first, again, strict=True):
        assert not isinstance(before, GatewayError) and not isinstance(after, GatewayError)
        assert (before.output == after.output).all()
    await gateway.aclose()


async def test_a_failed_embedding_batch_call_is_traced_then_each_event_goes_on_alone(
    tmp_path: Path, fake: FakeProvider
) -> None:
    fake.script("cheap", Behaviour(status=400))  # e.g. one input the provider refuses spoils the call
    gateway = make_gateway(tmp_path, fake, EMBED_BATCH)
    requests = embed_requests(TICKETS[:3], ["acme"] * 3)
    traces: list[dict[str, Any]] = []

    answers = await gateway.run(requests, traces)

    assert [len(r.body["input"]) for r in fake.received("cheap")] == [3, 1, 1, 1]
    assert all(not isinstance(answer, GatewayError) for answer in answers)
    for request in requests:
        mine = [t for t in traces if t["event_id"] == request.context.event_id]
        assert [(t["call_attempt"], t["status"]) for t in mine] == [(1, "error"), (2, "ok")]
        assert len({t["trace_id"] for t in mine}) == 2
    await gateway.aclose()


async def test_a_text_sent_twice_in_a_batch_is_embedded_once_per_tenant(
    tmp_path: Path, fake: FakeProvider
) -> None:
    gateway = make_gateway(tmp_path, fake, EMBED_BATCH)
    texts = ["pin blocked", "top up failed", "pin blocked", "pin blocked"]
    requests = embed_requests(texts, ["acme", "acme", "acme", "globex"])
    traces: list[dict[str, Any]] = []

    answers = await gateway.run(requests, traces)

    sent = sorted(sorted(r.body["input"]) for r in fake.received("cheap"))
    assert sent == [["pin blocked"], ["pin blocked", "top up failed"]]  # tenants never share a call
    twin = next(t for t in traces if t["event_id"] == requests[2].context.event_id)
    assert twin["cache_status"] == "coalesced" and twin["cost_usd"] == 0
    assert twin["gen_ai_usage_input_tokens"] == 0
    first, second = answers[0], answers[2]
    assert not isinstance(first, GatewayError) and not isinstance(second, GatewayError)
    assert (first.output == second.output).all()
    await gateway.aclose()


async def test_a_tenants_embeddings_batch_is_split_at_the_input_cap(
    tmp_path: Path, fake: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.gateway import ad_hoc_context
    from gateway.models import ModelRequest

    monkeypatch.setattr("gateway.gateway.MAX_BATCH_INPUTS", 4)
    gateway = make_gateway(tmp_path, fake, EMBED_BATCH)
    document = ModelRequest("embed", ad_hoc_context("acme", "embed"), parts=("one", "two", "three"))
    requests = [document, *embed_requests(TICKETS[:3], ["acme"] * 3)]
    traces: list[dict[str, Any]] = []

    answers = await gateway.run(requests, traces)

    assert sorted(len(r.body["input"]) for r in fake.received("cheap")) == [2, 4]  # 3 + 1, then 2
    assert [a.output.shape[0] for a in answers if not isinstance(a, GatewayError)] == [3, 1, 1, 1]
    await gateway.aclose()


def test_split_by_weight_adds_up_and_follows_the_weights() -> None:
    from gateway.gateway import split_by_weight

    assert split_by_weight(10, [1, 1, 1]) == [4, 3, 3]  # a tie in remainders: the earliest rounds up
    assert split_by_weight(7, [0, 0]) == [4, 3]  # no weight at all: equal shares
    assert split_by_weight(0, [5, 9]) == [0, 0]
    assert split_by_weight(100, [1, 3]) == [25, 75]
    shares = split_by_weight(1001, [17, 4, 250, 9])
    assert sum(shares) == 1001 and shares[2] == max(shares) and shares[1] == min(shares)
