"""Whether any bootstrap broker still accepts connections, for a shutdown deciding whether waiting
can help.

Why: a SIGTERMed worker waits up to ``shutdown_drain_s`` for its batches in flight to be acked.
With every broker gone, nothing can be acked, so the wait is dead time for the operator (60 s by
default). A TCP connect is enough to tell: it is refused at once when nothing listens, and it says
nothing about Kafka's health otherwise, so a broker that accepts but cannot ack still gets the full
drain.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["bootstrap_addresses", "wait_until_unreachable"]


def bootstrap_addresses(bootstrap: str) -> list[tuple[str, int]]:
    """``host:port`` pairs from a comma-separated bootstrap list (``[::1]:9092`` for IPv6)."""
    addresses = []
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        if host and port.isdigit():
            addresses.append((host.strip("[]"), int(port)))
    return addresses


async def _accepts(host: str, port: int, timeout_s: float) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def wait_until_unreachable(bootstrap: str, gone_for_s: float, probe_every_s: float = 0.5) -> None:
    """Return once no bootstrap broker has accepted a connection for ``gone_for_s`` seconds; runs
    until cancelled while one does. With no address to probe it never returns."""
    addresses = bootstrap_addresses(bootstrap)
    loop = asyncio.get_running_loop()
    last_accepted = loop.time()
    while True:
        if not addresses:
            await asyncio.sleep(3600)
            continue
        for host, port in addresses:
            if await _accepts(host, port, timeout_s=1.0):
                last_accepted = loop.time()
                break
        else:
            if loop.time() - last_accepted >= gone_for_s:
                return
        await asyncio.sleep(probe_every_s)
