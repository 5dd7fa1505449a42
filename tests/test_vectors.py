"""Contract tests for the vector-store port, run identically against every adapter.

Workflows switch between the embedded qdrant-edge shard (in process, or in a child process of its
own) and a Qdrant server by configuration alone, so the adapters must agree on ranking, scores,
tenant isolation, filters and overwrite semantics. Every contract test below is parametrized over
all three.

There is no Qdrant server binary on development machines, so the server adapter runs against
qdrant-client's in-process ``:memory:`` mode (``ServerVectorStore.in_memory``). That exercises our
request building and result mapping through the real client API, but not the network path nor
server-only features such as payload indexes (local mode ignores them).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psutil
import pytest

import sinks.vectors.server
from sinks.vectors import (
    EdgeVectorStore,
    IsolatedVectorStore,
    SearchQuery,
    ServerVectorStore,
    VectorPoint,
    VectorStore,
    VectorStoreProcessError,
    open_vector_store,
    point_id,
)
from streams import processes
from tests.conftest import wait_until

DIM = 384
COLLECTION = "riverbed_test"
TENANT_A = "tenant-a"
TENANT_B = "tenant-b"

FloatArray = npt.NDArray[np.float32]

# The edge adapter stores vectors as float16, so a point's score against itself is 1 - ~1e-4.
SELF_SCORE_TOLERANCE = 1e-3


def unit_vectors(n: int, seed: int = 7) -> FloatArray:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    normalized: FloatArray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return normalized


def make_point(
    vector: FloatArray,
    *,
    tenant: str = TENANT_A,
    kind: str = "chunk",
    source: str = "doc-1",
    index: int = 0,
    **extra: Any,
) -> VectorPoint:
    payload: dict[str, Any] = {
        "tenant_id": tenant,
        "kind": kind,
        "source_id": source,
        "chunk_index": index,
        "text": f"{source} chunk {index}",
        **extra,
    }
    return VectorPoint(id=point_id(tenant, source, kind, str(index)), vector=vector.tolist(), payload=payload)


def open_adapter(kind: str, tmp_path: Path) -> VectorStore:
    if kind == "edge":
        return EdgeVectorStore(tmp_path / "qdrant", COLLECTION)
    if kind == "isolated":
        return IsolatedVectorStore(tmp_path / "qdrant", COLLECTION)
    return ServerVectorStore.in_memory(COLLECTION)


@pytest.fixture(params=["edge", "isolated", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    opened = open_adapter(str(request.param), tmp_path)
    opened.ensure_collection(DIM)
    yield opened
    opened.close()


# -- contract tests, both adapters -----------------------------------------------------------------


def test_search_returns_nearest_first_with_cosine_scores(store: VectorStore) -> None:
    vectors = unit_vectors(40)
    store.upsert([make_point(v, index=i) for i, v in enumerate(vectors)])

    noise = np.random.default_rng(99).standard_normal(DIM).astype(np.float32) * 0.005
    query = vectors[17] + noise
    hits = store.search(query.tolist(), tenant_id=TENANT_A, limit=5)

    cosine = vectors @ (query / np.linalg.norm(query))
    expected = np.argsort(-cosine)[:5]
    assert [h.payload["chunk_index"] for h in hits] == expected.tolist()
    assert hits[0].id == point_id(TENANT_A, "doc-1", "chunk", "17")
    assert hits[0].score > 0.99
    for hit in hits:
        assert hit.score == pytest.approx(float(cosine[hit.payload["chunk_index"]]), abs=1e-4)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].payload == {
        "tenant_id": TENANT_A,
        "kind": "chunk",
        "source_id": "doc-1",
        "chunk_index": 17,
        "text": "doc-1 chunk 17",
    }


def test_search_never_returns_another_tenants_points(store: VectorStore) -> None:
    vectors = unit_vectors(10)
    store.upsert([make_point(v, tenant=TENANT_A, index=i) for i, v in enumerate(vectors[:5])])
    # Tenant B holds the exact query vector (score 1.0) plus more points than the limit needs.
    store.upsert([make_point(v, tenant=TENANT_B, index=i) for i, v in enumerate(vectors)])

    hits = store.search(vectors[9].tolist(), tenant_id=TENANT_A, limit=50)

    assert len(hits) == 5
    assert {h.payload["tenant_id"] for h in hits} == {TENANT_A}
    assert all(h.score < 0.5 for h in hits)
    b_hits = store.search(vectors[9].tolist(), tenant_id=TENANT_B, limit=50)
    assert len(b_hits) == 10
    assert b_hits[0].score == pytest.approx(1.0, abs=SELF_SCORE_TOLERANCE)
    assert store.search(vectors[9].tolist(), tenant_id="tenant-nobody", limit=50) == []


def test_kinds_filter(store: VectorStore) -> None:
    vectors = unit_vectors(9)
    kinds = ["chunk", "summary", "entity"]
    store.upsert([make_point(v, kind=kinds[i % 3], index=i) for i, v in enumerate(vectors)])
    query = vectors[0].tolist()

    only_summaries = store.search(query, tenant_id=TENANT_A, limit=20, kinds=["summary"])
    assert len(only_summaries) == 3
    assert {h.payload["kind"] for h in only_summaries} == {"summary"}

    two_kinds = store.search(query, tenant_id=TENANT_A, limit=20, kinds=("chunk", "entity"))
    assert len(two_kinds) == 6
    assert {h.payload["kind"] for h in two_kinds} == {"chunk", "entity"}

    assert len(store.search(query, tenant_id=TENANT_A, limit=20, kinds=None)) == 9
    assert store.search(query, tenant_id=TENANT_A, limit=20, kinds=[]) == []


def test_exclude_source_id(store: VectorStore) -> None:
    vectors = unit_vectors(8)
    store.upsert([make_point(v, source="doc-self", index=i) for i, v in enumerate(vectors[:4])])
    store.upsert([make_point(v, source="doc-other", index=i) for i, v in enumerate(vectors[4:])])
    # The query is one of doc-self's own vectors: without the exclusion it would rank first.
    query = vectors[0].tolist()

    assert store.search(query, tenant_id=TENANT_A, limit=1)[0].payload["source_id"] == "doc-self"
    hits = store.search(query, tenant_id=TENANT_A, limit=20, exclude_source_id="doc-self")
    assert len(hits) == 4
    assert {h.payload["source_id"] for h in hits} == {"doc-other"}

    combined = store.search(
        query, tenant_id=TENANT_A, limit=20, kinds=["chunk"], exclude_source_id="doc-other"
    )
    assert {h.payload["source_id"] for h in combined} == {"doc-self"}


def test_exclusion_is_exact_when_the_excluded_source_fills_the_top(store: VectorStore) -> None:
    """The edge adapter drops the excluded source after over-fetching by one; when that source has
    several points at the top it must still return the best *other* points, in order, exactly
    like a search that filtered in the engine (the server adapter does)."""
    query = unit_vectors(1, seed=3)[0]
    rng = np.random.default_rng(11)
    # doc-self: 5 points nearly identical to the query; 12 others at decreasing similarity
    own = [query + 0.01 * rng.standard_normal(query.shape) for _ in range(5)]
    others = [query + (0.3 + 0.1 * i) * rng.standard_normal(query.shape) for i in range(12)]
    store.upsert([make_point(v, source="doc-self", index=i) for i, v in enumerate(own)])
    store.upsert([make_point(v, source=f"doc-{i}", index=0) for i, v in enumerate(others)])

    top = store.search(query.tolist(), tenant_id=TENANT_A, limit=17)
    expected = [h.id for h in top if h.payload["source_id"] != "doc-self"]
    assert [h.payload["source_id"] for h in top[:5]] == ["doc-self"] * 5
    for limit in (1, 3, 12, 20):
        hits = store.search(query.tolist(), tenant_id=TENANT_A, limit=limit, exclude_source_id="doc-self")
        assert [h.id for h in hits] == expected[:limit], limit
    # a source with one point (a ticket): excluded without a second query
    single = store.search(query.tolist(), tenant_id=TENANT_A, limit=3, exclude_source_id="doc-0")
    assert "doc-0" not in {h.payload["source_id"] for h in single} and len(single) == 3


def test_reupsert_same_id_overwrites(store: VectorStore) -> None:
    vectors = unit_vectors(3)
    store.upsert([make_point(vectors[0], index=0), make_point(vectors[1], index=1)])
    assert store.count() == 2

    redelivered = make_point(vectors[2], index=0, text="rewritten")
    assert redelivered.id == make_point(vectors[0], index=0).id
    store.upsert([redelivered])
    store.upsert([redelivered])

    assert store.count() == 2
    assert store.count(TENANT_A) == 2
    hits = store.search(vectors[2].tolist(), tenant_id=TENANT_A, limit=2)
    assert hits[0].id == redelivered.id
    assert hits[0].score == pytest.approx(1.0, abs=SELF_SCORE_TOLERANCE)
    assert hits[0].payload["text"] == "rewritten"
    # The old vector no longer matches the overwritten point.
    old = store.search(vectors[0].tolist(), tenant_id=TENANT_A, limit=2)
    assert all(h.score < 0.5 for h in old)


def test_count_per_tenant(store: VectorStore) -> None:
    vectors = unit_vectors(8)
    assert store.count() == 0
    store.upsert([make_point(v, tenant=TENANT_A, index=i) for i, v in enumerate(vectors[:3])])
    store.upsert([make_point(v, tenant=TENANT_B, index=i) for i, v in enumerate(vectors[3:])])

    assert store.count(TENANT_A) == 3
    assert store.count(TENANT_B) == 5
    assert store.count("tenant-nobody") == 0
    assert store.count() == 8


def test_ensure_collection_is_idempotent_and_checks_dimensions(store: VectorStore) -> None:
    store.upsert([make_point(unit_vectors(1)[0])])
    store.ensure_collection(DIM)
    assert store.count() == 1
    with pytest.raises(ValueError):
        store.ensure_collection(DIM // 2)


def test_rejects_bad_input(store: VectorStore) -> None:
    short = [0.1] * (DIM - 1)
    payload = make_point(unit_vectors(1)[0]).payload
    with pytest.raises(ValueError):
        store.upsert([VectorPoint(id=point_id("x"), vector=short, payload=payload)])
    with pytest.raises(ValueError):
        store.search(short, tenant_id=TENANT_A, limit=3)
    with pytest.raises(ValueError):
        store.search(unit_vectors(1)[0].tolist(), tenant_id="", limit=3)
    with pytest.raises(ValueError):
        store.search(unit_vectors(1)[0].tolist(), tenant_id=TENANT_A, limit=0)
    store.upsert([])
    assert store.count() == 0


def test_closed_store_refuses_work(store: VectorStore) -> None:
    store.close()
    store.close()
    with pytest.raises(RuntimeError):
        store.count()
    with pytest.raises(RuntimeError):
        store.search(unit_vectors(1)[0].tolist(), tenant_id=TENANT_A, limit=1)


# -- edge only: durability and ownership of the path -----------------------------------------------


def test_edge_data_survives_close_and_reopen(tmp_path: Path) -> None:
    vectors = unit_vectors(30)
    first = EdgeVectorStore(tmp_path / "qdrant", COLLECTION)
    first.ensure_collection(DIM)
    tenants = [TENANT_A if i % 2 else TENANT_B for i in range(len(vectors))]
    first.upsert([make_point(v, tenant=tenants[i], index=i) for i, v in enumerate(vectors)])
    before = first.search(vectors[3].tolist(), tenant_id=TENANT_A, limit=5)
    first.close()

    reopened = EdgeVectorStore(tmp_path / "qdrant", COLLECTION)
    try:
        # No ensure_collection: an existing shard is loaded on first use.
        assert reopened.count() == 30
        assert reopened.count(TENANT_A) == 15
        after = reopened.search(vectors[3].tolist(), tenant_id=TENANT_A, limit=5)
        assert [(h.id, h.payload) for h in after] == [(h.id, h.payload) for h in before]
        assert [h.score for h in after] == pytest.approx([h.score for h in before])
        reopened.ensure_collection(DIM)
        reopened.upsert([make_point(vectors[0], tenant=TENANT_A, index=100)])
        assert reopened.count() == 31
    finally:
        reopened.close()


def closed_wal_files(store: EdgeVectorStore) -> list[str]:
    return sorted(p.name for p in (store.directory / "wal").iterdir() if p.name.startswith("closed-"))


def fill_until_wal_closed_two_files(store: EdgeVectorStore) -> int:
    """Upsert bulky points until the WAL has closed two of its 32 MiB files; returns how many."""
    store.ensure_collection(8)
    rng = np.random.default_rng(3)
    written = 0
    closed_ever: set[str] = set()
    while len(closed_ever) < 2:
        assert written < 200_000, "the WAL never closed two files"
        vectors = rng.standard_normal((1000, 8)).astype(np.float32)
        store.upsert([make_point(v, index=written + i, text="x" * 2000) for i, v in enumerate(vectors)])
        written += len(vectors)
        closed_ever.update(closed_wal_files(store))
    return written


@pytest.mark.parametrize(("interval_s", "closed_kept"), [(3600.0, 2), (0.0, 1)])
def test_edge_periodic_flush_bounds_the_wal(tmp_path: Path, interval_s: float, closed_kept: int) -> None:
    """Unflushed, the WAL keeps every file since the shard was created (and replays them all on
    load); flushed while written to, it drops a closed file once the next one closes."""
    store = EdgeVectorStore(tmp_path / "qdrant", COLLECTION, flush_interval_s=interval_s)
    try:
        written = fill_until_wal_closed_two_files(store)
        assert len(closed_wal_files(store)) == closed_kept
        assert store.count() == written
    finally:
        store.close()
    reopened = EdgeVectorStore(tmp_path / "qdrant", COLLECTION)
    try:
        assert reopened.count() == written
    finally:
        reopened.close()


def test_edge_reopen_with_other_dimensions_fails(tmp_path: Path) -> None:
    first = EdgeVectorStore(tmp_path / "qdrant", COLLECTION)
    first.ensure_collection(DIM)
    first.close()
    reopened = EdgeVectorStore(tmp_path / "qdrant", COLLECTION)
    try:
        with pytest.raises(ValueError):
            reopened.ensure_collection(DIM * 2)
    finally:
        reopened.close()


def test_edge_path_has_one_owner(tmp_path: Path) -> None:
    owner = EdgeVectorStore(tmp_path / "qdrant", COLLECTION)
    owner.ensure_collection(DIM)
    intruder = EdgeVectorStore(tmp_path / "qdrant", COLLECTION)
    try:
        with pytest.raises(RuntimeError):
            intruder.count()
    finally:
        intruder.close()
        owner.close()


def test_edge_requires_ensure_collection_for_a_new_path(tmp_path: Path) -> None:
    fresh = EdgeVectorStore(tmp_path / "qdrant", COLLECTION)
    with pytest.raises(RuntimeError):
        fresh.count()
    fresh.close()
    assert not (tmp_path / "qdrant").exists()


# -- ids, points and adapter selection -------------------------------------------------------------


# -- isolated only: the shard's process follows its owner -----------------------------------------

_HOLDER = """
import sys
from pathlib import Path
import numpy as np
from sinks.vectors import IsolatedVectorStore, VectorPoint, point_id
store = IsolatedVectorStore(Path(sys.argv[1]), sys.argv[2])
store.ensure_collection(8)
vectors = np.random.default_rng(1).standard_normal((50, 8)).astype(np.float32)
store.upsert([
    VectorPoint(point_id("t", str(i)), v, {"tenant_id": "t", "kind": "chunk", "source_id": str(i)})
    for i, v in enumerate(vectors)
])
print(store.pid, flush=True)
sys.stdin.read()  # hold the store until killed
"""


def exited(pid: int) -> bool:
    """Gone, or a zombie: an orphan's exit is reaped by whoever adopted it, which may be slow."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def test_isolated_shard_is_released_when_its_owner_is_killed(tmp_path: Path) -> None:
    """A worker killed with -9 never calls close(); its child must still let the next worker in,
    with every acknowledged write kept."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path / "qdrant"), COLLECTION],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        child_pid = int(holder.stdout.readline())
        assert psutil.pid_exists(child_pid)
        blocked = EdgeVectorStore(tmp_path / "qdrant", COLLECTION)
        with pytest.raises(RuntimeError, match="another process"):
            blocked.count()
        blocked.close()
        holder.kill()
        holder.wait(timeout=10)
        wait_until(lambda: exited(child_pid), 10, "the orphaned shard process to exit")
    finally:
        if holder.poll() is None:
            holder.kill()
    successor = EdgeVectorStore(tmp_path / "qdrant", COLLECTION)
    try:
        assert successor.count() == 50
    finally:
        successor.close()


def test_isolated_store_survives_the_death_of_its_shard_process(tmp_path: Path) -> None:
    """A dead child fails the call in flight with a clear error; the next call starts a new child
    on the same shard, so one crash does not fail every batch after it."""
    store = IsolatedVectorStore(tmp_path / "qdrant", COLLECTION)
    try:
        store.ensure_collection(DIM)
        store.upsert([make_point(v, index=i) for i, v in enumerate(unit_vectors(7))])
        first = store.pid
        os.kill(first, signal.SIGKILL)
        # Whether the store notices the death before sending (and restarts at once) or during the
        # call (which then fails) depends on timing; either way at most one call fails.
        failures = 0
        for _ in range(2):
            try:
                assert store.count() == 7  # a new child, with every acknowledged write
                break
            except VectorStoreProcessError as exc:
                assert "is gone" in str(exc)
                failures += 1
        assert failures <= 1
        assert store.pid != first
        assert not psutil.pid_exists(first)
        with pytest.raises(ValueError, match="dimensions"):
            store.upsert([make_point(np.ones(DIM + 1, dtype=np.float32), index=99)])  # reopened with its size
    finally:
        store.close()


def test_isolated_store_replaces_a_hung_shard_process(tmp_path: Path) -> None:
    store = IsolatedVectorStore(tmp_path / "qdrant", COLLECTION, call_timeout_s=0.5)
    try:
        store.ensure_collection(DIM)
        store.upsert([make_point(v, index=i) for i, v in enumerate(unit_vectors(3))])
        hung = store.pid
        os.kill(hung, signal.SIGSTOP)  # alive, but it will never answer
        with pytest.raises(VectorStoreProcessError, match="no answer to count"):
            store.count()
        assert not psutil.pid_exists(hung)  # killed and reaped, so it cannot hold the shard
        assert store.count() == 3
    finally:
        store.close()


def test_isolated_store_keeps_the_engines_error_types(tmp_path: Path) -> None:
    store = IsolatedVectorStore(tmp_path / "qdrant", COLLECTION)
    try:
        with pytest.raises(RuntimeError, match="ensure_collection"):
            store.count()  # a new path and no collection yet: the edge adapter's own message
        store.ensure_collection(DIM)
        with pytest.raises(ValueError, match="dimensions"):
            store.search([0.1] * (DIM - 1), tenant_id=TENANT_A, limit=1)
        assert store.count() == 0  # the child survives its callers' mistakes
    finally:
        store.close()


def test_point_id_is_deterministic_uuid() -> None:
    first = point_id(TENANT_A, "doc-1", "3")
    assert first == point_id(TENANT_A, "doc-1", "3")
    assert uuid.UUID(first).version == 5
    assert first != point_id(TENANT_A, "doc-1", "4")
    assert point_id("a:b", "c") != point_id("a", "b:c")
    with pytest.raises(ValueError):
        point_id()


@pytest.mark.parametrize(
    ("point_id_value", "payload"),
    [
        ("not-a-uuid", {"tenant_id": "t", "kind": "chunk", "source_id": "s"}),
        (str(uuid.uuid4()), {"kind": "chunk", "source_id": "s"}),
        (str(uuid.uuid4()), {"tenant_id": "", "kind": "chunk", "source_id": "s"}),
        (str(uuid.uuid4()), {"tenant_id": 7, "kind": "chunk", "source_id": "s"}),
    ],
)
def test_vector_point_validates(point_id_value: str, payload: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        VectorPoint(id=point_id_value, vector=[0.0] * DIM, payload=payload)


@pytest.mark.parametrize("url", ["", "   "])
def test_open_vector_store_without_url_is_embedded(url: str, tmp_path: Path) -> None:
    opened = open_vector_store(qdrant_url=url, path=tmp_path, collection=COLLECTION)
    try:
        assert isinstance(opened, EdgeVectorStore)
        assert opened.directory == tmp_path / COLLECTION
    finally:
        opened.close()


def test_open_vector_store_isolated_runs_the_shard_in_a_child(tmp_path: Path) -> None:
    opened = open_vector_store(qdrant_url="", path=tmp_path, collection=COLLECTION, isolated=True)
    try:
        assert isinstance(opened, IsolatedVectorStore)
        assert psutil.Process(opened.pid).ppid() == os.getpid()
        # what `stack status` shows. Waited for: Popen returns once exec has closed the child's
        # CLOEXEC pipe, a moment before the kernel sets the new command line; under a loaded CI
        # machine the status read once came in that window and saw an empty one.
        wait_until(
            lambda: processes.vector_store_pid(os.getpid()) == opened.pid, 10, "the shard's command line"
        )
        opened.ensure_collection(DIM)
        assert (tmp_path / COLLECTION / "edge_config.json").is_file()
    finally:
        opened.close()
    assert not psutil.pid_exists(opened.pid)


def test_open_vector_store_with_url_is_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A real remote client would start a background version check against a server we do not have.
    calls: list[tuple[str, str, str | None]] = []

    def fake_server(url: str, collection: str, api_key: str | None = None) -> ServerVectorStore:
        calls.append((url, collection, api_key))
        return ServerVectorStore.in_memory(collection)

    monkeypatch.setattr(sinks.vectors.server, "ServerVectorStore", fake_server)
    opened = open_vector_store(
        qdrant_url=" http://qdrant:6333 ", path=tmp_path, collection=COLLECTION, api_key="k"
    )
    try:
        assert isinstance(opened, ServerVectorStore)
        assert calls == [("http://qdrant:6333", COLLECTION, "k")]
    finally:
        opened.close()


def test_search_many_answers_each_query_like_search(store: VectorStore) -> None:
    vectors = unit_vectors(40, seed=11)
    store.upsert(
        [
            make_point(
                v, tenant=TENANT_A if i % 2 else TENANT_B, source=f"s{i}", kind="ticket" if i % 3 else "chunk"
            )
            for i, v in enumerate(vectors)
        ]
    )
    queries = [
        SearchQuery(vectors[0], TENANT_A, 5),
        SearchQuery(vectors[1], TENANT_A, 3, kinds=["ticket"], exclude_source_id="s1"),
        SearchQuery(vectors[2], TENANT_B, 4, kinds=[]),
        SearchQuery(vectors[3], TENANT_B, 2),
    ]
    batched = store.search_many(queries)
    singles = [
        store.search(
            q.vector,
            tenant_id=q.tenant_id,
            limit=q.limit,
            kinds=q.kinds,
            exclude_source_id=q.exclude_source_id,
        )
        for q in queries
    ]
    assert [[h.id for h in hits] for hits in batched] == [[h.id for h in hits] for hits in singles]
    assert batched[2] == []
    assert all(h.payload["tenant_id"] == TENANT_A for h in batched[0] + batched[1])
    assert all(h.payload["source_id"] != "s1" for h in batched[1])
