"""`riverbed run` (the main job) end to end on its own stack, small: 40 tickets and 2 documents.

The runner must bring its own broker up and down, print the summary, and exit 0 only when every
event produced exactly one result. The worker must refuse to start without a trained classifier.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from streams import processes, stack
from streams.config import PROJECT_ROOT, Settings
from streams.runner import RunOptions, run_main
from tests.conftest import free_port


@pytest.fixture()
def own_stack(tmp_path: Path, trained_models: Path) -> Settings:
    """A separate data dir and port: run_main stops the broker it started, never the session's."""
    settings = Settings(
        data_dir=tmp_path / "data",
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        app_id="riverbed-main-job",
        topic_partitions=2,
        sink_flush_interval_s=0.2,
    )
    shutil.copytree(trained_models, settings.models_dir)
    return settings


def test_run_processes_everything_prints_a_summary_and_cleans_up(own_stack: Settings, tmp_path: Path) -> None:
    tickets = tmp_path / "tickets.csv"
    lines = (PROJECT_ROOT / "infra/datasets/banking77/test.csv").read_text(encoding="utf-8").splitlines()
    tickets.write_text("\n".join(lines[:41]) + "\n", encoding="utf-8")  # header + 40 single-line rows
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.md").write_text(
        "# Budget\n\nThe federal budget deficit fell while taxes were cut for families."
    )
    (corpus / "b.txt").write_text("Our troops serve with honor. We will defend the nation against terror.")

    out = io.StringIO()
    code = run_main(
        own_stack,
        RunOptions(tickets_csv=tickets, corpus_dir=corpus, timeout_s=300),
        Console(file=out, width=200),
    )
    text = out.getvalue()
    assert code == 0, text
    assert "40 → 40" in text
    assert "2 → 2" in text
    assert "ticket intent accuracy" in text
    assert "dead-lettered" in text
    assert not stack.status(own_stack).running, "run without --keep must stop the broker it started"
    assert processes.running_pid(own_stack, "worker") is None


def test_worker_refuses_to_start_without_a_classifier(tmp_path: Path) -> None:
    env = {**os.environ, "RIVERBED_DATA_DIR": str(tmp_path), "RIVERBED_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "riverbed train" in result.stdout + result.stderr


def test_worker_exits_non_zero_when_its_vector_store_is_held_elsewhere(
    broker: Settings, trained_models: Path, tmp_path: Path
) -> None:
    """An idle worker that cannot work would only build lag; it must crash so it is seen and restarted."""
    from sinks.vectors import EdgeVectorStore

    settings = broker.model_copy(update={"data_dir": tmp_path, "app_id": "riverbed-locked"})
    shutil.copytree(trained_models, settings.models_dir)
    holder = EdgeVectorStore(settings.qdrant_path, settings.qdrant_collection)
    holder.ensure_collection(384)
    try:
        env = processes.settings_env(settings)
        result = subprocess.run(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    finally:
        holder.close()
    assert result.returncode != 0
    assert "worker_runtime_failed" in result.stdout + result.stderr
