"""Avro (schemaless, fastavro) encoding of event values against the schemas in schemas/avro.

The schemas are the public contract, so they are read from the repository at start-up rather
than mirrored in Python classes; a payload that does not fit its schema fails loudly on both the
producing and the consuming side.
"""

from __future__ import annotations

import io
import json
from functools import cache
from pathlib import Path
from typing import Any

import fastavro

from streams.config import PROJECT_ROOT
from streams.topics import SCHEMAS

SCHEMA_DIR = PROJECT_ROOT / "schemas" / "avro"


class CodecError(ValueError):
    """The bytes are not a valid Avro record for the schema (or the record does not fit it)."""


@cache
def load_schema(name: str, schema_dir: Path = SCHEMA_DIR) -> Any:
    path = schema_dir / f"{SCHEMAS.get(name, name)}.avsc"
    with path.open(encoding="utf-8") as fh:
        return fastavro.parse_schema(json.load(fh))


def encode(schema_name: str, record: dict[str, Any]) -> bytes:
    schema = load_schema(schema_name)
    buf = io.BytesIO()
    try:
        fastavro.schemaless_writer(buf, schema, record, strict_allow_default=True)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CodecError(f"record does not match {schema_name}: {exc}") from exc
    return buf.getvalue()


def decode(schema_name: str, data: bytes) -> dict[str, Any]:
    """Decode strictly: trailing bytes mean the writer used another schema, so they are an error."""
    schema = load_schema(schema_name)
    buf = io.BytesIO(data)
    try:
        record = fastavro.schemaless_reader(buf, schema, None)
    except Exception as exc:  # fastavro raises many types (EOFError, UnicodeDecodeError, IndexError...)
        raise CodecError(f"cannot decode {schema_name}: {type(exc).__name__}: {exc}") from exc
    if buf.tell() != len(data):
        raise CodecError(f"cannot decode {schema_name}: {len(data) - buf.tell()} trailing bytes")
    if not isinstance(record, dict):
        raise CodecError(f"cannot decode {schema_name}: not a record")
    return record
