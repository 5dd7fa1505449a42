"""``riverbed train``: embed a labelled CSV/JSONL, fit the classification head, save a new version.

Artifacts are versioned (v1, v2, …) and never overwritten, so a workflow version that names
``banking77-intent@v3`` can always be traced back to the exact weights and data it ran.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.local.artifacts import artifact_dir, next_version
from gateway.local.classifier import train_head
from gateway.local.embedder import Embedder
from streams.config import PROJECT_ROOT
from streams.publish import read_rows

BANKING77_TRAIN = PROJECT_ROOT / "infra" / "datasets" / "banking77" / "train.csv"
BANKING77_TEST = PROJECT_ROOT / "infra" / "datasets" / "banking77" / "test.csv"


@dataclass(frozen=True)
class TrainingReport:
    name: str
    version: str
    path: Path
    rows: int
    labels: int
    cv_scores: dict[str, float]
    embed_seconds: float
    fit_seconds: float


def load_labelled(
    path: Path, text_column: str, label_column: str, limit: int | None = None
) -> tuple[list[str], list[str]]:
    texts: list[str] = []
    labels: list[str] = []
    for row in read_rows(path):
        text, label = str(row.get(text_column) or "").strip(), str(row.get(label_column) or "").strip()
        if not text or not label:
            continue
        texts.append(text)
        labels.append(label)
        if limit is not None and len(texts) >= limit:
            break
    if not texts:
        raise ValueError(f"no labelled rows in {path} (columns {text_column!r}, {label_column!r})")
    return texts, labels


def train(
    models_dir: Path,
    name: str,
    data: Path,
    *,
    text_column: str = "text",
    label_column: str = "category",
    embedder: Embedder | None = None,
) -> TrainingReport:
    texts, labels = load_labelled(data, text_column, label_column)
    model = embedder or Embedder()
    t0 = time.perf_counter()
    vectors = model.embed(texts)
    embed_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    head, scores = train_head(vectors, labels)
    fit_s = time.perf_counter() - t1
    version = next_version(models_dir, name)
    target = artifact_dir(models_dir, name, version)
    head.save(target)
    digest = hashlib.sha256(data.read_bytes()).hexdigest()[:16]
    (target / "SOURCE").write_text(f"{data}\nsha256:{digest}\nembedder:{model.name}\n", encoding="utf-8")
    return TrainingReport(name, version, target, len(texts), len(set(labels)), scores, embed_s, fit_s)
