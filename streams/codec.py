"""Avro (schemaless, fastavro) encoding of event values against the schemas in schemas/avro.

The schemas are the public contract, so they are read from the repository at start-up rather
than mirrored in Python classes; a payload that does not fit its schema fails loudly on both the
producing and the consuming side.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
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


@cache
def schema_text(name: str, schema_dir: Path = SCHEMA_DIR) -> bytes:
    """The schema as published (JSON, logical types included), for a container file's header."""
    return (schema_dir / f"{SCHEMAS.get(name, name)}.avsc").read_bytes()


def container_file(schema_name: str, values: Sequence[bytes], records: int | None = None) -> bytes:
    """Schemaless records of ``schema_name`` as one Avro object container file (one block, no codec),
    without decoding them: what ClickHouse's ``FORMAT Avro`` reads. Each value is one record, or
    several back to back (``encode_many``) when ``records`` gives the total. The block declares its
    record count and byte size and ends with the sync marker, so a value that does not hold exactly
    the records counted misaligns the block and the reader rejects the whole file."""
    sync = os.urandom(16)
    meta = {b"avro.schema": schema_text(schema_name), b"avro.codec": b"null"}
    parts = [b"Obj\x01", _zigzag(len(meta))]
    for key, value in meta.items():
        parts += [_zigzag(len(key)), key, _zigzag(len(value)), value]
    body = b"".join(values)
    count = len(values) if records is None else records
    parts += [_zigzag(0), sync, _zigzag(count), _zigzag(len(body)), body, sync]
    return b"".join(parts)


def _zigzag(n: int) -> bytes:
    """Avro's long: zig-zag, then 7-bit groups, low first."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode(schema_name: str, record: dict[str, Any]) -> bytes:
    schema = load_schema(schema_name)
    buf = io.BytesIO()
    try:
        fastavro.schemaless_writer(buf, schema, record, strict_allow_default=True)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CodecError(f"record does not match {schema_name}: {exc}") from exc
    return buf.getvalue()


def encode_many(schema_name: str, records: Sequence[dict[str, Any]]) -> bytes:
    """Records back to back, as in the body of an Avro container block: one value for many events
    of one schema (``decode_many`` reads it back)."""
    return b"".join(encode(schema_name, record) for record in records)


def decode_many(schema_name: str, data: bytes, count: int) -> list[dict[str, Any]]:
    """Exactly ``count`` records back to back; fewer, more or trailing bytes are a CodecError."""
    schema = load_schema(schema_name)
    buf = io.BytesIO(data)
    records: list[Any] = []
    try:
        for _ in range(count):
            records.append(fastavro.schemaless_reader(buf, schema, None))
    except Exception as exc:  # fastavro raises many types (EOFError, UnicodeDecodeError, IndexError...)
        which = schema_name if count == 1 else f"record {len(records) + 1} of {count} {schema_name}"
        raise CodecError(f"cannot decode {which}: {type(exc).__name__}: {exc}") from exc
    if buf.tell() != len(data):
        which = schema_name if count == 1 else f"{count} {schema_name}"
        raise CodecError(f"cannot decode {which}: {len(data) - buf.tell()} trailing bytes")
    if not all(isinstance(record, dict) for record in records):
        raise CodecError(f"cannot decode {schema_name}: not a record")
    return records


def decode(schema_name: str, data: bytes) -> dict[str, Any]:
    """Decode strictly: trailing bytes mean the writer used another schema, so they are an error."""
    return decode_many(schema_name, data, 1)[0]
