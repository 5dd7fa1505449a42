"""End to end on the embedded stack: a real worker process, real broker, real models, chdb, qdrant-edge.

Good tickets and documents (txt, md, html, pdf) must each come back as exactly one result event;
bad ones (garbage bytes, wrong type, tenant mismatch, missing file, binary text) must land in the
DLQ with the reason in headers and their original bytes, while the worker keeps going. The
ClickHouse sink then holds one trace per (event, step) and one row per result, also after replay.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import shutil
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from sinks.clickhouse import connect, migrate
from sinks.service import ClickHouseSink
from sinks.vectors import EdgeVectorStore
from streams import envelope as env
from streams import processes
from streams.codec import decode
from streams.config import PROJECT_ROOT, Settings
from streams.offsets import end_offsets, reader_from
from streams.publish import (
    Draft,
    Published,
    document_drafts,
    document_drafts_from_dir,
    publish,
    ticket_drafts,
)
from streams.topics import (
    DOCUMENT_UPLOADED,
    INPUT_TOPICS,
    RESULT_TOPICS,
    TICKET_CREATED,
    TICKET_REVIEW,
    dlq_topic,
)
from tests.conftest import cli, drain_sink, run
from tests.test_textract import build_pdf

TICKETS = 120
PII = {
    "email": "jane.roe@example.org",
    "phone": "+44 20 7946 0958",
    "card": "4111 1111 1111 1111",
    "iban": "GB82 WEST 1234 5698 7654 32",
    "ip": "203.0.113.77",
    "employee id": "EMP-482913",  # a configured pattern
}
PII_TICKETS = [
    {
        "ticket_id": "PII-1",
        "text": f"My card {PII['card']} was charged twice. Email {PII['email']} or call {PII['phone']}.",
    },
    {
        "ticket_id": "PII-2",
        "text": f"Refund to IBAN {PII['iban']} please, agent {PII['employee id']} agreed.",
    },
    {
        "ticket_id": "PII-3",
        "text": f"I logged in from {PII['ip']} and my transfer to jane.roe@example.org failed.",
    },
]
RETRY_ATTEMPTS = 3
TICKET_STEPS = 4  # classify, extract, retrieve, summarize
DOCUMENT_STEPS = 4  # classify, extract, embed, summarize


@dataclass
class Observed:
    results: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=lambda: defaultdict(list))
    dead: dict[str, tuple[bytes, dict[str, str]]] = field(default_factory=dict)
    result_headers: dict[str, dict[str, str]] = field(default_factory=dict)
    reviews: dict[str, dict[str, str]] = field(default_factory=dict)
    """Review-topic records by causing event: their headers."""


@dataclass
class PipelineRun:
    settings: Settings
    good: dict[str, Published]
    bad: dict[str, str]
    """event id -> the DLQ step expected for it"""
    bad_values: dict[str, bytes]
    observed: Observed
    docs_dir: Path
    requeued: Observed
    """What came out after the DLQ's fetch failures were requeued once the outage was over."""
    fetch_failures: set[str]
    pii: dict[str, Published]
    """Tickets seeded with known PII (tenant pii-co)."""


def _bad_ticket_events() -> list[tuple[str, bytes, list[tuple[str, bytes]], str]]:
    """(event id, value, headers, expected step) for tickets that must be dead-lettered at decode."""
    good_value, headers, _ = env.encode_event(
        TICKET_CREATED,
        {
            "tenant_id": "acme",
            "ticket_id": "B1",
            "subject": None,
            "body": "hello",
            "channel": "email",
            "customer_id": None,
            "sensitivity": "internal",
            "created_at": 0,
            "metadata": {},
        },
    )

    def with_id(eid: str, hs: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        return [(k, eid.encode() if k == "ce_id" else v) for k, v in hs]

    wrong_type = [(k, b"io.riverbed.other.v1" if k == "ce_type" else v) for k, v in headers]
    other_tenant = [(k, b"someone-else" if k == "ce_tenantid" else v) for k, v in headers]
    return [
        ("bad-garbage", b"\x00\xff garbage \x13\x37", with_id("bad-garbage", headers), "decode"),
        ("bad-truncated", good_value[:-3], with_id("bad-truncated", headers), "decode"),
        ("bad-type", good_value, with_id("bad-type", wrong_type), "decode"),
        ("bad-tenant", good_value, with_id("bad-tenant", other_tenant), "decode"),
    ]


def _make_docs(root: Path) -> Path:
    docs = root / "docs"
    docs.mkdir()
    shutil.copy(PROJECT_ROOT / "infra/datasets/sotu/texts/2021_joseph_r_biden_d.txt", docs / "sotu_2021.txt")
    (docs / "notes.md").write_text(
        "# Quarterly notes\n\nRevenue grew at **Acme Corp** in 2026. Contact "
        "ops@acme.example for the [report](https://x.example/r).\n"
    )
    (docs / "page.html").write_text(
        "<html><head><script>var x=1</script></head><body><h1>Refund policy"
        "</h1><p>Refunds of up to $500 are processed within 5 days.</p></body></html>"
    )
    (docs / "scan.pdf").write_bytes(build_pdf(b"Invoice from Globex Corporation for 1200 dollars"))
    return docs


async def _observe(
    settings: Settings, start: dict[TopicPartition, int], want: set[str], timeout_s: float
) -> Observed:
    seen = Observed()
    consumer = await reader_from(settings.kafka_bootstrap, start)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while loop.time() < deadline and not want <= (seen.results.keys() | seen.dead.keys()):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    h = env.header_map(r.headers)
                    if r.topic in RESULT_TOPICS:
                        seen.results[h["ce_causationid"]].append((h["ce_id"], decode(r.topic, r.value)))
                        seen.result_headers[h["ce_causationid"]] = h
                    elif r.topic == TICKET_REVIEW:
                        assert decode(r.topic, r.value)["causation_id"] == h["ce_causationid"]
                        seen.reviews[h["ce_causationid"]] = h
                    else:
                        seen.dead[h.get("ce_id", "")] = (r.value, h)
        return seen
    finally:
        await consumer.stop()


async def _publish_raw(
    settings: Settings, events: list[tuple[str, bytes, list[tuple[str, bytes]], str]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for _eid, value, headers, _step in events:
            await producer.send_and_wait(TICKET_CREATED, value, key=b"bad", headers=headers)
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
def pipeline(
    broker: Settings, trained_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PipelineRun]:
    root = tmp_path_factory.mktemp("pipeline")
    settings = broker.model_copy(
        update={
            "app_id": "riverbed-e2e",
            "data_dir": broker.data_dir,
            "retry_max_attempts": RETRY_ATTEMPTS,
            "retry_backoff_base_s": 0.2,
            "retry_backoff_cap_s": 1.0,
            "redact_patterns": {"employee_id": r"EMP-\d{6}"},
        }
    )
    docs = _make_docs(root)
    with (PROJECT_ROOT / "infra/datasets/banking77/test.csv").open(newline="") as fh:
        rows = [r for i, r in enumerate(csv.DictReader(fh)) if i % 25 == 0][:TICKETS]
    start = run(
        end_offsets(
            settings.kafka_bootstrap, [*RESULT_TOPICS, TICKET_REVIEW, *(dlq_topic(t) for t in INPUT_TOPICS)]
        )
    )
    web = root / "web"
    web.mkdir()
    (web / "faq.html").write_text(
        "<html><body><h1>FAQ</h1><p>Wire transfers to Initech arrive in two days.</p></body></html>"
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_FlakyHandler, directory=str(web)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}"
    worker = processes.spawn(settings, "worker", ["worker"], log_path=root / "worker.log")
    try:
        web_docs = list(
            document_drafts(
                [
                    {"document_id": "web-faq.html", "uri": f"{base_url}/faq.html"},
                    {"document_id": "web-missing", "uri": f"{base_url}/missing.html"},
                    {"document_id": "web-flaky", "uri": f"{base_url}/flaky.html"},
                    {"document_id": "web-down", "uri": f"{base_url}/down.html"},
                ],
                tenant="acme",
            )
        )
        bad_docs = [
            web_docs[3],
            web_docs[1],
            Draft(
                DOCUMENT_UPLOADED,
                "missing",
                {
                    "tenant_id": "acme",
                    "document_id": "missing",
                    "uri": (root / "nope.txt").as_uri(),
                    "content_type": None,
                    "title": None,
                    "sensitivity": "internal",
                    "uploaded_at": 0,
                    "metadata": {},
                },
            ),
            Draft(
                DOCUMENT_UPLOADED,
                "binary",
                {
                    "tenant_id": "acme",
                    "document_id": "binary",
                    "uri": _binary(root).as_uri(),
                    "content_type": None,
                    "title": None,
                    "sensitivity": "internal",
                    "uploaded_at": 0,
                    "metadata": {},
                },
            ),
        ]
        published = run(
            publish(
                settings.kafka_bootstrap,
                [
                    *ticket_drafts(rows, tenant="acme"),
                    *document_drafts_from_dir(docs, tenant="acme"),
                    web_docs[0],
                    web_docs[2],
                    *bad_docs,
                ],
            )
        )
        pii = {
            p.event_id: p
            for p in run(publish(settings.kafka_bootstrap, ticket_drafts(PII_TICKETS, tenant="pii-co")))
        }
        raw_bad = _bad_ticket_events()
        run(_publish_raw(settings, raw_bad))
        bad_doc_ids = {
            p.event_id: step
            for p, step in zip(published[-4:], ["fetch", "fetch", "fetch", "extract_text"], strict=True)
        }
        good = {p.event_id: p for p in published[:-4]}
        bad = {**bad_doc_ids, **{eid: step for eid, _, _, step in raw_bad}}
        observed = run(_observe(settings, start, set(good) | set(bad) | set(pii), timeout_s=240))
        assert worker.poll() is None, "the worker must survive bad events"
        # The fix: the outage is over. An operator requeues that error class from the DLQ.
        _FlakyHandler.outage_over = True
        fetch_failures = {eid for eid, step in bad_doc_ids.items() if step == "fetch"}
        restart = run(end_offsets(settings.kafka_bootstrap, [*RESULT_TOPICS, dlq_topic(DOCUMENT_UPLOADED)]))
        requeue = cli(settings, "dlq", "requeue", "--topic", DOCUMENT_UPLOADED, "--error-class", "FetchError")
        assert requeue.returncode == 0, requeue.stderr
        requeued = run(_observe(settings, restart, fetch_failures, timeout_s=120))
    finally:
        # Stop before the tests look: the worker owns the embedded vector store's path.
        clean = processes.stop(worker.pid, timeout_s=30)
        server.shutdown()
        server.server_close()
    assert clean, f"worker did not stop cleanly on SIGTERM; see {root / 'worker.log'}"
    yield PipelineRun(
        settings,
        good,
        bad,
        {eid: v for eid, v, _, _ in raw_bad},
        observed,
        docs,
        requeued,
        fetch_failures,
        pii,
    )


class _FlakyHandler(SimpleHTTPRequestHandler):
    """Serves the web directory; /flaky.html answers 503 twice and then the page, /down.html
    always 503. ``hits`` counts requests per path."""

    hits: ClassVar[Counter[str]] = Counter()
    outage_over: ClassVar[bool] = False

    def do_GET(self) -> None:
        self.hits[self.path] += 1
        down = self.path == "/down.html" and not self.outage_over
        if down or (self.path == "/flaky.html" and self.hits[self.path] <= 2):
            self.send_error(503, "scripted outage")
            return
        if self.path in ("/flaky.html", "/down.html"):
            self.path = "/faq.html"
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:  # keep test output readable
        pass


def _binary(root: Path) -> Path:
    path = root / "binary.txt"
    path.write_bytes(bytes(range(256)) * 4)
    return path


def test_every_good_event_has_exactly_one_result(pipeline: PipelineRun) -> None:
    missing = [p.key for eid, p in pipeline.good.items() if eid not in pipeline.observed.results]
    assert not missing, f"no result for {missing[:10]}"
    ids_per_cause = {eid: {rid for rid, _ in pipeline.observed.results[eid]} for eid in pipeline.good}
    assert all(len(ids) == 1 for ids in ids_per_cause.values())
    assert not set(pipeline.good) & set(pipeline.observed.dead)


def test_ticket_results_carry_lineage_and_are_mostly_right(pipeline: PipelineRun) -> None:
    tickets = {eid: p for eid, p in pipeline.good.items() if p.topic == TICKET_CREATED}
    assert len(tickets) == TICKETS
    correct = 0
    for eid, published in tickets.items():
        _, record = pipeline.observed.results[eid][0]
        assert record["causation_id"] == eid
        assert record["ticket_id"] == published.key
        assert record["workflow_version"].startswith("ticket-1+banking77-intent@v")
        assert "local/all-MiniLM-L6-v2-int8" in record["models"]
        assert record["priority"] in {"low", "normal", "high", "urgent"}
        assert 0.0 <= record["intent_confidence"] <= 1.0
        assert record["summary"]
        correct += record["intent"] == published.label
    # A head trained on 2,001 rows measured ~0.87 on this sample; 0.75 leaves room for noise only.
    assert correct / len(tickets) >= 0.75


def test_low_confidence_tickets_are_not_final_and_wait_for_review(pipeline: PipelineRun) -> None:
    """The shipped policy sends intents under 0.5 confidence to ticket.review.v1; their results say
    so in headers, every other result is final, and the sink keeps the flag."""
    tickets = [eid for eid, p in pipeline.good.items() if p.topic == TICKET_CREATED] + list(pipeline.pii)
    low = {eid for eid in tickets if pipeline.observed.results[eid][0][1]["intent_confidence"] < 0.5}
    assert low, "the small test head should be unsure about some tickets"
    assert set(pipeline.observed.reviews) == low
    for eid in tickets:
        headers = pipeline.observed.result_headers[eid]
        assert headers["x-riverbed-final"] == ("false" if eid in low else "true")
        assert ("low_confidence<0.5" in headers["x-riverbed-review-reasons"]) == (eid in low)
    for eid in low:
        assert pipeline.observed.reviews[eid]["ce_type"] == "io.riverbed.ticket.review.v1"


def test_later_tickets_find_similar_earlier_ones(pipeline: PipelineRun) -> None:
    similar = [
        r["similar"]
        for eid, p in pipeline.good.items()
        if p.topic == TICKET_CREATED
        for _, r in pipeline.observed.results[eid]
    ]
    with_hits = [s for s in similar if s]
    assert len(with_hits) >= TICKETS // 2
    assert all(hit["score"] <= 1.0001 for hits in with_hits for hit in hits)


def test_documents_of_every_format_are_enriched(pipeline: PipelineRun) -> None:
    docs = {
        p.key: pipeline.observed.results[eid][0][1]
        for eid, p in pipeline.good.items()
        if p.topic == DOCUMENT_UPLOADED
    }
    assert set(docs) == {"sotu_2021.txt", "notes.md", "page.html", "scan.pdf", "web-faq.html", "web-flaky"}
    assert "Initech" in docs["web-faq.html"]["summary"]
    assert docs["scan.pdf"]["content_type"] == "application/pdf"
    assert "Globex" in docs["scan.pdf"]["summary"]
    assert "var x" not in docs["page.html"]["summary"]
    assert docs["sotu_2021.txt"]["chunk_count"] > 10
    assert len(docs["sotu_2021.txt"]["vector_point_ids"]) == docs["sotu_2021.txt"]["chunk_count"]
    orgs = {e["text"] for d in docs.values() for e in d["entities"] if e["label"] == "ORG"}
    assert any("Globex" in o for o in orgs)
    emails = {e["text"] for e in docs["notes.md"]["entities"] if e["label"] == "EMAIL"}
    assert emails == {"ops@acme.example"}
    assert all(d["labels"] and abs(sum(lbl["score"] for lbl in d["labels"])) <= 1.0001 for d in docs.values())


def test_bad_events_are_dead_lettered_with_reason_and_original_bytes(pipeline: PipelineRun) -> None:
    for eid, step in pipeline.bad.items():
        assert eid in pipeline.observed.dead, f"{eid} not in DLQ"
        value, headers = pipeline.observed.dead[eid]
        assert headers["x-riverbed-step"] == step
        assert headers["x-riverbed-error-class"]
        assert headers["x-riverbed-error-message"]
        assert headers["x-riverbed-original-topic"] in INPUT_TOPICS
        int(headers["x-riverbed-original-offset"])
        if eid in pipeline.bad_values:
            assert value == pipeline.bad_values[eid]
    assert not set(pipeline.bad) & set(pipeline.observed.results)


def test_a_retryable_failure_is_retried_until_it_passes(pipeline: PipelineRun) -> None:
    flaky = [eid for eid, p in pipeline.good.items() if p.key == "web-flaky"]
    assert flaky and flaky[0] in pipeline.observed.results
    assert _FlakyHandler.hits["/flaky.html"] == 3  # two 503s through the retry topic, then success


def test_retries_run_out_into_the_dlq_with_the_count_and_first_origin(pipeline: PipelineRun) -> None:
    retryable = [eid for eid, (_, h) in pipeline.observed.dead.items() if h["x-riverbed-retryable"] == "true"]
    down = [eid for eid in retryable if eid in pipeline.bad]
    assert len(down) == len(retryable) == 1  # web-down, and nothing else ran out of attempts
    _, headers = pipeline.observed.dead[down[0]]
    assert headers["x-riverbed-attempts"] == str(RETRY_ATTEMPTS)
    assert headers["x-riverbed-error-message"].startswith("HTTP 503")
    assert headers["x-riverbed-original-topic"] == DOCUMENT_UPLOADED  # not its retry topic
    assert headers["x-riverbed-first-failure-at"] < headers["x-riverbed-last-failure-at"]
    assert _FlakyHandler.hits["/down.html"] >= RETRY_ATTEMPTS


def test_requeued_dead_letters_complete_after_the_fix(pipeline: PipelineRun) -> None:
    """web-down now answers: its requeued event completes. The 404 and the missing file still
    cannot: they are back in the DLQ, attempts counted afresh, not lost."""
    [down] = [
        eid
        for eid in pipeline.fetch_failures
        if pipeline.observed.dead[eid][1]["x-riverbed-retryable"] == "true"
    ]
    assert down in pipeline.requeued.results
    [(result_id, record)] = pipeline.requeued.results[down]
    assert "Initech" in record["summary"]
    for eid in pipeline.fetch_failures - {down}:
        _, headers = pipeline.requeued.dead[eid]
        assert headers["x-riverbed-attempts"] == "1"
        assert headers["x-riverbed-replayed-from"].startswith(dlq_topic(DOCUMENT_UPLOADED))
    assert result_id


def test_sink_writes_one_trace_per_step_and_one_row_per_result_even_when_replayed(
    pipeline: PipelineRun,
) -> None:
    settings = pipeline.settings.model_copy(update={"app_id": "riverbed-e2e-sink"})
    client = connect(settings.effective_clickhouse_dsn, "e2e")
    try:
        migrate(client)
        for attempt in range(2):  # the second pass is a full replay under a new consumer group
            sink_settings = settings.model_copy(update={"app_id": f"riverbed-e2e-sink-{attempt}"})
            drain_sink(ClickHouseSink(sink_settings, client))
            ids = ",".join(f"'{eid}'" for eid in pipeline.good)
            per_step = client.query_rows(
                f"SELECT workflow, step, count(), uniqExact(event_id) FROM traces FINAL "
                f"WHERE event_id IN ({ids}) GROUP BY workflow, step ORDER BY workflow, step"
            )
            counts = Counter(p.topic for p in pipeline.good.values())
            expected_events = {"ticket": counts[TICKET_CREATED], "document": counts[DOCUMENT_UPLOADED]}
            assert {(w, s) for w, s, _, _ in per_step} == {
                ("ticket", s) for s in ("classify", "extract", "retrieve", "summarize")
            } | {("document", s) for s in ("classify", "extract", "embed", "summarize")}
            for workflow, _step, rows, events in per_step:
                assert rows == events == expected_events[workflow]
            results = client.query_scalar(f"SELECT count() FROM results FINAL WHERE causation_id IN ({ids})")
            assert results == len(pipeline.good)
        statuses = client.query_rows("SELECT DISTINCT status, gen_ai_provider_name FROM traces FINAL")
        assert statuses == [("ok", "local")]
        pending = client.query_rows(
            "SELECT causation_id, review_reasons FROM results FINAL "
            f"WHERE final = 0 AND causation_id IN ({ids})"
        )
        assert {cause for cause, _ in pending} == set(pipeline.observed.reviews) & set(pipeline.good)
        assert all(reasons == ["low_confidence<0.5"] for _, reasons in pending)
    finally:
        client.close()


def test_vectors_are_in_the_store_with_deterministic_ids(pipeline: PipelineRun) -> None:
    docs = {
        p.key: pipeline.observed.results[eid][0][1]
        for eid, p in pipeline.good.items()
        if p.topic == DOCUMENT_UPLOADED
    }
    chunks = sum(d["chunk_count"] for d in docs.values())
    # plus the document that completed once requeued after its outage
    chunks += sum(r["chunk_count"] for results in pipeline.requeued.results.values() for _, r in results)
    store = EdgeVectorStore(pipeline.settings.qdrant_path, pipeline.settings.qdrant_collection)
    try:
        assert store.count("acme") == chunks + TICKETS
        assert store.count("someone-else") == 0
    finally:
        store.close()


def test_documented_queries_run_on_pipeline_data(pipeline: PipelineRun) -> None:
    """Every SQL block in docs/analytics.md runs and returns rows on data this pipeline produced."""
    import re

    queries = re.findall(r"```sql\n(.*?)```", (PROJECT_ROOT / "docs/analytics.md").read_text(), re.S)
    assert len(queries) >= 5
    client = connect(pipeline.settings.effective_clickhouse_dsn, "e2e")
    try:
        migrate(client)
        docs_sink = pipeline.settings.model_copy(update={"app_id": "riverbed-e2e-docs"})
        drain_sink(ClickHouseSink(docs_sink, client))
        for sql in queries:
            rows = client.query_rows(sql)
            assert rows or "may be empty" in sql, f"no rows from:\n{sql}"
        hits = dict(((step, status), n) for step, status, n in client.query_rows(queries[-1]))
        assert hits.get(("retrieve", "hit"), 0) > 0
        evaluation_doc = (PROJECT_ROOT / "docs/evaluation.md").read_text()
        on_results = [q for q in re.findall(r"```sql\n(.*?)```", evaluation_doc, re.S) if "FROM results" in q]
        assert on_results
        for sql in on_results:
            assert client.query_rows(sql), f"no rows from:\n{sql}"
    finally:
        client.close()


def test_seeded_pii_reaches_no_clickhouse_table(pipeline: PipelineRun) -> None:
    """Known PII goes through the whole pipeline (worker, trace previews, results, sink); afterwards no
    table in the database holds any of it, and the masking is counted."""
    assert set(pipeline.pii) <= set(pipeline.observed.results), "the PII tickets must complete"
    client = connect(pipeline.settings.effective_clickhouse_dsn, "e2e_pii")
    try:
        migrate(client)
        drain_sink(
            ClickHouseSink(pipeline.settings.model_copy(update={"app_id": "riverbed-e2e-pii"}), client)
        )
        ids = ",".join(f"'{eid}'" for eid in pipeline.pii)
        assert client.query_scalar(f"SELECT count() FROM results FINAL WHERE causation_id IN ({ids})") == 3
        assert (
            client.query_scalar(
                f"SELECT sum(redaction_count) FROM results FINAL WHERE causation_id IN ({ids})"
            )
            > 0
        )
        assert (
            client.query_scalar(f"SELECT sum(redaction_count) FROM traces FINAL WHERE event_id IN ({ids})")
            > 0
        )
        tables = [
            row[0] for row in client.query_rows("SELECT name FROM system.tables WHERE database = 'e2e_pii'")
        ]
        assert {"traces", "results"} <= set(tables)
        for table in tables:
            dump = repr(client.query_rows(f"SELECT * FROM {table}"))
            for kind, value in PII.items():
                assert value not in dump, f"{kind} {value!r} found in table {table}"
    finally:
        client.close()
