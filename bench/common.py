"""What every benchmark script shares: a stack of its own on a free loopback port, and the one
``FIGURE <name> <value>`` line format that collectors parse."""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from streams import stack
from streams.config import Settings
from streams.kafka_compat import install_empty_fetch_floor


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def figure(name: str, value: float) -> None:
    print(f"FIGURE {name} {value:.4f}", flush=True)


@contextlib.contextmanager
def embedded_stack(name: str) -> Iterator[Settings]:
    """A broker of the benchmark's own on a free port, data in a temp dir; both gone afterwards,
    so a benchmark never touches a developer's stack and leaves nothing behind."""
    root = Path(tempfile.mkdtemp(prefix=f"riverbed-{name}-"))
    settings = Settings(data_dir=root, kafka_bootstrap=f"127.0.0.1:{free_port()}", app_id=f"riverbed-{name}")
    install_empty_fetch_floor(settings.kafka_empty_fetch_floor_ms)
    try:
        stack.up(settings)
        yield settings
    finally:
        stack.down(settings)
        shutil.rmtree(root, ignore_errors=True)
