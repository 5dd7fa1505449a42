"""Versioned, immutable model artifacts on the local filesystem: ``models_dir/<name>/v1``, ``v2``, ….

Why versions instead of overwriting one directory: a result records which artifact produced it
(``banking77-intent@v3``), so that directory must keep meaning the same weights forever.

Why atomic publication: the pipeline loads the newest version while ``riverbed train`` may be
writing the next one. An artifact is therefore built in a hidden sibling directory
(``.v3.tmp-<random>``), every file is fsynced, and only then is the directory renamed to ``v3``
(``rename(2)`` is atomic within a filesystem, and refuses to replace a non-empty directory, so two
writers cannot clobber each other). A reader sees no ``v3`` or a complete ``v3``. As a second line
of defence, :func:`latest_version` only counts a version whose ``meta.json`` parses, because
``meta.json`` is written last.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

META_FILE = "meta.json"

_VERSION = re.compile(r"v([1-9][0-9]*)")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]*")


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name) or name in {".", ".."}:
        raise ValueError(f"invalid artifact name {name!r}: use letters, digits and . _ @ + -")
    return name


def _version_number(version: str) -> int | None:
    match = _VERSION.fullmatch(version)
    return int(match.group(1)) if match else None


def artifact_dir(models_dir: Path, name: str, version: str) -> Path:
    """``models_dir/name/version``; the version must look like ``v1``, ``v2``, …"""
    if _version_number(version) is None:
        raise ValueError(f"invalid artifact version {version!r}: expected v1, v2, …")
    return Path(models_dir) / _check_name(name) / version


def _versions(models_dir: Path, name: str) -> list[tuple[int, Path]]:
    """Every ``vN`` directory of ``name`` (complete or not), lowest first."""
    root = Path(models_dir) / _check_name(name)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        number = _version_number(entry.name)
        if number is not None and entry.is_dir():
            found.append((number, entry))
    return sorted(found)


def is_complete(directory: Path) -> bool:
    """Whether ``directory`` holds a ``meta.json`` that parses as a JSON object."""
    try:
        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict)


def next_version(models_dir: Path, name: str) -> str:
    """One past the highest existing ``vN`` directory, so an abandoned version is never reused."""
    versions = _versions(models_dir, name)
    return f"v{versions[-1][0] + 1 if versions else 1}"


def latest_version(models_dir: Path, name: str) -> str | None:
    """The highest ``vN`` whose ``meta.json`` is complete, or ``None`` if there is none."""
    for number, path in reversed(_versions(models_dir, name)):
        if is_complete(path):
            return f"v{number}"
    return None


_PINNED = re.compile(r"(.+)@(v[1-9][0-9]*)")


def resolve(models_dir: Path, spec: str) -> tuple[str, str | None]:
    """``name`` (the newest complete version) or ``name@vN`` (exactly that one, e.g. the candidate an
    evaluation runs) as (name, version); version is None when nothing usable exists."""
    pinned = _PINNED.fullmatch(spec)
    if pinned is None:
        return spec, latest_version(models_dir, spec)
    name, version = pinned.groups()
    return name, version if is_complete(artifact_dir(models_dir, name, version)) else None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield an empty hidden sibling of ``target``; on clean exit it becomes ``target`` in one rename.

    Files written into the yielded directory are fsynced before the rename and the parent after it.
    If the body raises, the temporary directory is removed and ``target`` is left untouched.
    Raises :class:`FileExistsError` if ``target`` already exists (artifacts are never overwritten).
    """
    target = Path(target)
    if target.exists():
        raise FileExistsError(f"{target} already exists; artifacts are immutable")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{secrets.token_hex(6)}"
    tmp.mkdir()
    try:
        yield tmp
        for entry in tmp.rglob("*"):
            if entry.is_file():
                _fsync(entry)
        _fsync(tmp)
        try:
            os.rename(tmp, target)
        except OSError as exc:  # a concurrent writer published the same version first
            raise FileExistsError(f"{target} already exists; artifacts are immutable") from exc
        _fsync(target.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
