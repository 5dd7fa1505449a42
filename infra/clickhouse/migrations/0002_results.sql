-- One row per workflow result event (ticket.triaged.v1, document.enriched.v1), flattened so both workflows
-- share one table: nested records become parallel arrays (labels/label_scores, entity_labels/entity_texts).
-- event_id is the result event's ce_id, which is stable under redelivery, so a redelivered result replaces
-- itself under ReplacingMergeTree(ingested_at); read with FINAL to see one row per result.
-- Results are the business output, so they are kept longer than the per-call traces.
CREATE TABLE IF NOT EXISTS {db}.results
(
    event_id         String,
    causation_id     String,
    tenant_id        LowCardinality(String),
    workflow         LowCardinality(String),
    workflow_version LowCardinality(String),
    subject_id       String,
    models           Array(String),
    labels           Array(String),
    label_scores     Array(Float64),
    priority         LowCardinality(String),
    entity_labels    Array(String),
    entity_texts     Array(String),
    summary          String,
    similar_ids      Array(String),
    chunk_count      UInt32,
    processed_at     DateTime64(3, 'UTC'),
    ingested_at      DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(processed_at)
ORDER BY (tenant_id, workflow, event_id)
TTL processed_at + INTERVAL 365 DAY;
