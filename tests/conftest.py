"""Shared fixtures: a real noida-db broker on a free loopback port, settings pointing at temp dirs,
and a small real intent model trained once per session.

Everything here is the real component; nothing is mocked. Ports and directories are unique per
session so suites can run back to back (or beside a developer's own `riverbed run`).
"""

from __future__ import annotations

import asyncio
import csv
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.fake_provider import FakeProvider
from streams import stack
from streams.config import PROJECT_ROOT, Settings
from streams.kafka_compat import install_empty_fetch_floor

# Same as the CLI does: without it every idle test consumer spins a core against noida-db.
install_empty_fetch_floor(Settings().kafka_empty_fetch_floor_ms)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.1) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("riverbed")


@pytest.fixture(scope="session")
def base_settings(session_dir: Path) -> Settings:
    return Settings(
        data_dir=session_dir / "data",
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        topic_partitions=2,
        sink_flush_interval_s=0.2,
        worker_batch_window_s=0.02,
    )


@pytest.fixture(scope="session")
def broker(base_settings: Settings) -> Iterator[Settings]:
    """A running broker with all topics created; stopped (by PID) at the end of the session."""
    stack.up(base_settings)
    yield base_settings
    stack.down(base_settings)


@pytest.fixture(scope="session")
def trained_models(base_settings: Settings) -> Path:
    """A real intent head trained on every 5th BANKING77 training row (2,001 rows, all 77 intents)."""
    from gateway.local.training import train

    subset = banking77_train_subset(base_settings.data_dir / "banking77-train-2000.csv", every=5)
    train(base_settings.models_dir, base_settings.intent_model, subset)
    return base_settings.models_dir


def banking77_train_subset(path: Path, every: int) -> Path:
    """Every n-th BANKING77 training row as a CSV of its own: a smaller (n=5) or a deliberately weak
    (n=40, ~3 examples per intent) training set."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with (PROJECT_ROOT / "infra/datasets/banking77/train.csv").open(newline="", encoding="utf-8") as src:
        rows = list(csv.DictReader(src))[::every]  # by CSV row: some texts contain newlines
    with path.open("w", newline="", encoding="utf-8") as dst:
        writer = csv.DictWriter(dst, fieldnames=["text", "category"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "category": r["category"]} for r in rows)
    return path


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def cli(
    settings: Settings, *args: str, stdin: str | None = None, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``riverbed <args>`` as an operator would, with ``settings`` as its environment."""
    from streams import processes

    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env={**processes.settings_env(settings), "COLUMNS": "200"},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def in_subprocess(settings: Settings, module: str, function: str) -> str:
    """Call ``module.function()`` in a fresh interpreter with ``settings`` as its environment and
    return what it printed. For work on a chdb path: one process owns a path, and the test process
    may own another. Fails the test with the child's stderr if the call raised."""
    from streams import processes

    done = subprocess.run(
        [sys.executable, "-c", f"from {module} import {function} as f; f()"],
        env=processes.settings_env(settings),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def drain_sink(sink: Any, timeout_s: float = 60) -> None:
    """Run a ClickHouseSink until it has no lag left on its topics, then stop it cleanly."""
    from sinks.service import run_until_caught_up

    assert run(run_until_caught_up(sink, timeout_s)), "the sink did not catch up"
    assert sink.stats.rows["traces"] > 0


async def start_sink_group_at_end(settings: Settings, group_id: str) -> None:
    """Commit the sink group's offsets at the ends of the sink's topics: the session broker's topics
    hold every earlier test's records, and a test whose batches must be its own starts after them."""
    from streams.offsets import end_offsets
    from streams.ops import commit_offsets
    from streams.topics import AI_TRACES, RESULT_TOPICS

    ends = await end_offsets(settings.kafka_bootstrap, [AI_TRACES, *RESULT_TOPICS])
    await commit_offsets(settings.kafka_bootstrap, group_id, ends)


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeProvider]:
    """One fake provider (a real HTTP server on loopback) per test module."""
    with FakeProvider() as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeProvider) -> FakeProvider:
    """The module's fake provider with no scripts, defaults or request log left by earlier tests."""
    fake_server.reset()
    return fake_server
