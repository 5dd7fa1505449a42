"""Starting and stopping Riverbed's own long-running processes (worker, sink) with PID files.

Settings are handed to children as ``RIVERBED_*`` environment variables, so a child sees exactly the
configuration its parent resolved, whatever mix of file, env and arguments produced it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from streams.config import Settings


def settings_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if value is None:
            continue  # unset stays unset (the string "None" would read back as a value)
        # complex values travel as JSON, which is how pydantic-settings reads them back
        env[f"RIVERBED_{name.upper()}"] = json.dumps(value) if isinstance(value, dict | list) else str(value)
    return env


def pid_file(settings: Settings, name: str) -> Path:
    return settings.data_dir / f"{name}.pid"


def spawn(
    settings: Settings, name: str, args: list[str], log_path: Path | None = None
) -> subprocess.Popen[bytes]:
    """Run ``riverbed <args>`` as a child in its own session, logging to data_dir/<name>.log."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log = (log_path or settings.data_dir / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", *args],
        env=settings_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    pid_file(settings, name).write_text(str(proc.pid))
    return proc


def running_pid(settings: Settings, name: str) -> int | None:
    try:
        pid = int(pid_file(settings, name).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def vector_store_pid(worker_pid: int) -> int | None:
    """The worker's child that owns the embedded vector store (``qdrant_edge_isolated``), if any:
    the process to look at when the store's memory or CPU is in question."""
    # imported here: the vector-store package loads the engine, which `riverbed stack` never needs
    from sinks.vectors.isolated import SHARD_PROCESS_MODULE

    try:
        children = psutil.Process(worker_pid).children()
    except psutil.Error:
        return None
    for child in children:
        with contextlib.suppress(psutil.Error):
            if SHARD_PROCESS_MODULE in child.cmdline():
                return int(child.pid)
    return None


def alive(pid: int) -> bool:
    """True while ``pid`` runs. Reaps it if it is our exited child; a zombie that someone else must
    reap counts as gone too (kill(pid, 0) still succeeds on one)."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().split(")")[-1].split()[0] != "Z"
    return True


def stop(pid: int, timeout_s: float = 30.0) -> bool:
    """SIGTERM, wait up to ``timeout_s`` for a clean exit, then SIGKILL. True if it exited cleanly."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    alive(pid)  # reap it if it was our child
    return False


def stop_named(settings: Settings, name: str, timeout_s: float = 30.0) -> bool:
    pid = running_pid(settings, name)
    pid_file(settings, name).unlink(missing_ok=True)
    return stop(pid, timeout_s) if pid is not None else False
