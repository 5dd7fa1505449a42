"""Vector-store figures for the ticket workflow's retrieval: search time of a 256-ticket batch and
resident memory per 10k points, with the self-exclusion done two ways.

    python bench/vectors.py [--points 50000]

- ``engine``: the query carries ``must_not source_id = <ticket>`` and the store keeps a keyword
  index on ``source_id`` (how EdgeVectorStore worked before);
- ``adapter``: what EdgeVectorStore does now — one extra hit, the ticket's own point dropped in
  Python, no ``source_id`` index.

Each variant runs in its own process (so RSS is its own), on random unit vectors (384 dims,
float16 storage) with ticket-shaped payloads, malloc arenas capped and trimmed as in the worker.
Prints medians of 5 batch searches and RSS at 10k and at the end.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DIM = 384
BATCH = 256


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def run_variant(variant: str, points: int) -> dict[str, float]:
    import qdrant_edge as qe

    from sinks.vectors.base import SearchQuery, VectorPoint, point_id
    from sinks.vectors.edge import EdgeVectorStore

    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-8, 2)  # M_ARENA_MAX, as streams/memory.py sets it in the worker
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        store = EdgeVectorStore(Path(tmp), "bench")
        store.ensure_collection(DIM)
        if variant == "engine":
            store._require().update(
                qe.UpdateOperation.create_field_index("source_id", qe.PayloadSchemaType.Keyword)
            )
        rss: dict[str, float] = {}
        for start in range(0, points, BATCH):
            vectors = rng.standard_normal((BATCH, DIM)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            store.upsert(
                [
                    VectorPoint(
                        point_id("acme", "ticket", f"T{start + j}"),
                        vectors[j],
                        {
                            "tenant_id": "acme",
                            "kind": "ticket",
                            "source_id": f"T{start + j}",
                            "text": "x" * 80,
                        },
                    )
                    for j in range(BATCH)
                ]
            )
            if start + BATCH >= 10_000 and "at_10k_mib" not in rss:
                libc.malloc_trim(0)
                rss["at_10k_mib"] = _rss_mib()
        libc.malloc_trim(0)
        rss["at_end_mib"] = _rss_mib()
        queries = rng.standard_normal((BATCH, DIM)).astype(np.float32)
        batch = [SearchQuery(q, "acme", 3, exclude_source_id=f"T{j}") for j, q in enumerate(queries)]
        shard = store._require()
        timings = []
        for _ in range(5):
            t0 = time.perf_counter()
            if variant == "engine":
                shard.query_batch(qe.QueryBatchRequest([store._request(q, q.limit, True) for q in batch]))
            else:
                store.search_many(batch)
            timings.append(time.perf_counter() - t0)
        store.close()
    return {**rss, "search_batch_ms": statistics.median(timings) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=50_000)
    parser.add_argument("--variant", choices=["engine", "adapter"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.points)))
        return
    results = {}
    for variant in ("engine", "adapter"):
        done = subprocess.run(
            [sys.executable, __file__, "--variant", variant, "--points", str(args.points)],
            capture_output=True,
            text=True,
            check=True,
        )
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
        r = results[variant]
        per_10k = (r["at_end_mib"] - r["at_10k_mib"]) / ((args.points - 10_000) / 10_000)
        print(
            f"{variant:8s} search of {BATCH} at {args.points:,} points: "
            f"{r['search_batch_ms']:.0f} ms (median of 5); RSS {r['at_10k_mib']:.1f} MiB at 10k → "
            f"{r['at_end_mib']:.1f} MiB, {per_10k:.1f} MiB per 10k points"
        )
    print(
        f"search speed-up {results['engine']['search_batch_ms'] / results['adapter']['search_batch_ms']:.2f}x"
    )


if __name__ == "__main__":
    main()
