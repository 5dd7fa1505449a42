"""Broker reachability for the shutdown drain, against real sockets on loopback."""

from __future__ import annotations

import asyncio
import socket

import pytest

from streams.reachability import bootstrap_addresses, wait_until_unreachable


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_bootstrap_lists_parse_into_host_and_port() -> None:
    assert bootstrap_addresses("a:9092, b:9093,[::1]:9094") == [("a", 9092), ("b", 9093), ("::1", 9094)]
    assert bootstrap_addresses("no-port,:9092,") == []


async def test_it_returns_once_nothing_has_accepted_for_the_window() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(wait_until_unreachable(f"127.0.0.1:{closed_port()}", 0.6, 0.1), timeout=10)
    assert loop.time() - started >= 0.6


async def test_it_keeps_waiting_while_any_broker_accepts() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bootstrap = f"127.0.0.1:{closed_port()},127.0.0.1:{port}"
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(wait_until_unreachable(bootstrap, 0.3, 0.1), timeout=1.5)
    finally:
        server.close()
        await server.wait_closed()
    # the listener gone, the window runs out
    await asyncio.wait_for(wait_until_unreachable(bootstrap, 0.3, 0.1), timeout=10)
