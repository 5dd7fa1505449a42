"""Local-tier figures behind the design notes in docs/architecture.md.

    python bench/local_models.py

Embedding batch shapes, spaCy pipe vs one call per text, the ticket workflow's two model steps per
256 tickets, and the embedded vector store's resident growth per 10k points. Needs no broker.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.local.embedder import Embedder
from gateway.local.extraction import EntityExtractor
from gateway.local.training import BANKING77_TEST
from sinks.vectors import EdgeVectorStore, VectorPoint, point_id
from streams.publish import read_rows


def figure(name: str, value: float) -> None:
    print(f"FIGURE {name} {value:.4f}", flush=True)


def rate(n: int, run: Callable[[], object], repeats: int = 3) -> float:
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def rss_mib() -> dict[str, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("RssAnon", "RssFile")):
            key, value = line.split(":")
            fields[key] = int(value.split()[0]) / 1024
    return fields


def main() -> None:
    texts = [row["text"] for row in read_rows(BANKING77_TEST)]
    sample = texts[:512]
    embedder = Embedder()
    embedder.embed(sample[:32])

    def unsorted(batch: int) -> Callable[[], object]:
        return lambda: [embedder._embed_batch(sample[i : i + batch]) for i in range(0, len(sample), batch)]

    figure("embed_per_s_batch1_unsorted", rate(len(sample), unsorted(1)))
    figure("embed_per_s_batch128_unsorted", rate(len(sample), unsorted(128)))
    figure("embed_per_s_batch16_sorted", rate(len(sample), lambda: embedder.embed(sample)))

    extractor = EntityExtractor()
    nlp = extractor._nlp
    figure("spacy_per_s_pipe256", rate(len(sample), lambda: list(nlp.pipe(sample, batch_size=256))))
    figure("spacy_per_s_single", rate(len(sample), lambda: [nlp(t) for t in sample]))

    batch = texts[512:768]
    figure("embed_256_tickets_s", 256 / rate(256, lambda: embedder.embed(batch)))
    figure("extract_256_tickets_s", 256 / rate(256, lambda: extractor.extract_many(batch)))

    store = EdgeVectorStore(Path(tempfile.mkdtemp()), "bench")
    store.ensure_collection(384)
    rng = np.random.default_rng(0)
    marks = {}
    for n in range(0, 50_000, 256):
        vectors = rng.standard_normal((256, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        store.upsert(
            [
                VectorPoint(
                    point_id("t", str(n + i)),
                    v,
                    {"tenant_id": "t", "kind": "ticket", "source_id": f"T{n + i}", "text": texts[i % 3080]},
                )
                for i, v in enumerate(vectors)
            ]
        )
        if n in (9984, 49920):
            marks[n] = sum(rss_mib().values())
    store.close()
    figure("vector_store_rss_mib_per_10k_points", (marks[49920] - marks[9984]) / 4)


if __name__ == "__main__":
    main()
