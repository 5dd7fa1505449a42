"""How the worker's Faust app is put together from settings (no broker needed: nothing starts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.app import PRODUCER_MAX_BATCH_BYTES, create_app
from streams.config import Settings


@pytest.mark.parametrize(("codec", "expected"), [("lz4", "lz4"), ("zstd", "zstd"), ("none", None)])
def test_the_worker_producer_compresses_with_the_configured_codec(
    tmp_path: Path, codec: str, expected: str | None
) -> None:
    """Results, traces, retries and dead letters all leave through this one producer; the sink and
    every other consumer read whichever codec a batch names (tests/test_sink_avro.py)."""
    app = create_app(Settings(data_dir=tmp_path, producer_compression=codec))  # type: ignore[arg-type]
    assert app.producer.compression_type == expected
    assert app.conf.producer_max_batch_size == PRODUCER_MAX_BATCH_BYTES


def test_an_unknown_codec_is_refused_when_settings_load(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="producer_compression"):
        Settings(data_dir=tmp_path, producer_compression="brotli")  # type: ignore[arg-type]
