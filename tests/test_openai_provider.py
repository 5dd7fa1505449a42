"""The OpenAI-compatible provider's embeddings against the fake provider, a real HTTP server on
loopback: both wire shapes of a vector, and what is refused."""

from __future__ import annotations

import base64
import struct
from typing import Any

import httpx
import pytest

from gateway.errors import MalformedResponse
from gateway.fake_provider import Behaviour, FakeProvider
from gateway.policy import ProviderConfig, Route
from gateway.providers.base import Secrets
from gateway.providers.openai import OpenAIProvider, vector_of

TEXTS = ["Where is my new card?", "I was charged twice for a top-up", "How do I change my PIN?"]


def provider(fake: FakeProvider, **config: Any) -> OpenAIProvider:
    settings = ProviderConfig(kind="openai", base_url=f"{fake.url}/v1", transport="aiohttp", **config)
    return OpenAIProvider("fake", settings, Secrets())


def vectors_as_json_numbers(fake: FakeProvider, texts: list[str], dimensions: int) -> list[list[float]]:
    """The server's own answer in the default wire shape, read without the provider's code."""
    body = {"model": "emb", "input": texts, "dimensions": dimensions}
    answer = httpx.post(f"{fake.url}/v1/embeddings", json=body, timeout=10).json()
    return [row["embedding"] for row in sorted(answer["data"], key=lambda row: row["index"])]


async def test_embeddings_are_asked_for_as_base64_and_read_as_the_servers_vectors(fake: FakeProvider) -> None:
    openai = provider(fake)
    try:
        reply = await openai.embed(Route(provider="fake", model="emb", dimensions=16), TEXTS, timeout_s=10)
    finally:
        await openai.aclose()
    assert fake.received("emb")[0].body["encoding_format"] == "base64"
    expected = vectors_as_json_numbers(fake, TEXTS, 16)
    assert expected[0] != pytest.approx(expected[1], abs=1e-3)  # one vector per text, not one for all
    assert len(reply.output) == len(TEXTS)
    for got, want in zip(reply.output, expected, strict=True):
        assert got == pytest.approx(want, abs=1e-6)  # float32 on the wire


async def test_embeddings_come_as_json_numbers_when_base64_is_off(fake: FakeProvider) -> None:
    openai = provider(fake, embeddings_base64=False)
    try:
        reply = await openai.embed(Route(provider="fake", model="emb", dimensions=16), TEXTS, timeout_s=10)
    finally:
        await openai.aclose()
    assert "encoding_format" not in fake.received("emb")[0].body
    assert reply.output == vectors_as_json_numbers(fake, TEXTS, 16)


async def test_an_embeddings_answer_that_is_not_vectors_is_malformed(fake: FakeProvider) -> None:
    fake.set_default(Behaviour(body="malformed_json"), model="emb")
    openai = provider(fake)
    try:
        with pytest.raises(MalformedResponse):
            await openai.embed(Route(provider="fake", model="emb"), TEXTS, timeout_s=10)
    finally:
        await openai.aclose()


def test_a_base64_vector_is_little_endian_float32() -> None:
    values = [0.5, -1.25, 3.0]
    assert vector_of(base64.b64encode(struct.pack("<3f", *values)).decode()) == values


@pytest.mark.parametrize(
    ("embedding", "error"),
    [
        ("not base64 at all!", ValueError),
        (base64.b64encode(b"\x00" * 6).decode(), ValueError),  # a float32 and a half
        ({"values": [1.0]}, TypeError),
        ([1.0, "x"], ValueError),
    ],
)
def test_an_embedding_in_neither_shape_is_refused(embedding: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        vector_of(embedding)
