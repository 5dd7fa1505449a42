"""The embedded local stack: a noida-db Kafka-protocol broker on loopback plus the paths chdb and
qdrant-edge use under the same data dir.

The broker binary is started directly (not through noida-db's Python launcher) so the PID we record
is the broker's own and ``stack down`` can signal it. Readiness means a Kafka client fetched
metadata, not that the port is open: the port opens before the broker answers requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from streams import processes
from streams.config import Settings
from streams.topics import all_topics

BROKER = "broker"
"""Process name of the broker: its PID lives in ``data_dir/broker.pid`` like the worker's and sink's."""


class StackError(RuntimeError):
    """The local broker could not be started, reached or stopped."""


@dataclass(frozen=True)
class StackStatus:
    running: bool
    pid: int | None
    bootstrap: str
    topics: tuple[str, ...]
    data_dir: Path


def noida_binary() -> Path:
    import noida_db

    path = Path(noida_db.__file__).parent / "noida-db"
    if not path.exists():
        raise StackError(f"noida-db broker binary not found at {path}")
    return path


def broker_pid(settings: Settings) -> int | None:
    return processes.running_pid(settings, BROKER)


def start_broker(settings: Settings) -> int:
    """Start noida-db (Kafka only) in the background unless ours is already running; return its PID."""
    existing = broker_pid(settings)
    if existing is not None:
        return existing
    settings.kafka_dir.mkdir(parents=True, exist_ok=True)
    log = (settings.data_dir / "broker.log").open("ab")
    cmd = [
        str(noida_binary()),
        "start",
        "--only",
        "kafka",
        "--kafka-port",
        str(settings.kafka_port),
        "--host",
        "127.0.0.1",
        "--data-dir",
        str(settings.kafka_dir),
    ]
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    processes.pid_file(settings, BROKER).write_text(str(proc.pid))
    return proc.pid


async def wait_for_metadata(bootstrap: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaError, OSError) as exc:
            last_error = exc
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        await asyncio.sleep(0.2)
    raise StackError(f"no broker metadata from {bootstrap} within {timeout_s:.0f}s: {last_error}")


async def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics with their partition counts; return the names created now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                spec.name,
                spec.partitions or settings.topic_partitions,
                1,
                topic_configs={"cleanup.policy": "compact"} if spec.compacted else None,
            )
            for spec in all_topics()
            if spec.name not in existing
        ]
        if wanted:
            await admin.create_topics(wanted)
        return [t.name for t in wanted]
    finally:
        await admin.close()


async def list_topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        return sorted(await admin.list_topics())
    finally:
        await admin.close()


def up(settings: Settings, *, manage_broker: bool = True) -> StackStatus:
    """Bring the stack to a usable state; with manage_broker=False the broker is someone else's."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    pid = start_broker(settings) if manage_broker else None
    asyncio.run(wait_for_metadata(settings.kafka_bootstrap))
    asyncio.run(ensure_topics(settings))
    settings.clickhouse_path.mkdir(parents=True, exist_ok=True)
    settings.qdrant_path.mkdir(parents=True, exist_ok=True)
    return status(settings) if pid is None else _status_with(settings, pid)


def _status_with(settings: Settings, pid: int | None) -> StackStatus:
    try:
        topics = tuple(asyncio.run(list_topics(settings.kafka_bootstrap)))
        running = True
    except (KafkaError, OSError):
        topics, running = (), False
    return StackStatus(running, pid, settings.kafka_bootstrap, topics, settings.data_dir)


def status(settings: Settings) -> StackStatus:
    return _status_with(settings, broker_pid(settings))


def down(settings: Settings, timeout_s: float = 15.0) -> bool:
    """SIGTERM the broker we started, escalate to SIGKILL after the timeout; True if one was stopped."""
    pid = broker_pid(settings)
    processes.pid_file(settings, BROKER).unlink(missing_ok=True)
    if pid is None:
        return False
    processes.stop(pid, timeout_s)
    return True
