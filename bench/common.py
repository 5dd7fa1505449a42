"""What every benchmark script shares: a free loopback port for its own broker, and the one
``FIGURE <name> <value>`` line format that collectors parse."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def figure(name: str, value: float) -> None:
    print(f"FIGURE {name} {value:.4f}", flush=True)
