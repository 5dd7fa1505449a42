-- One row per model-call attempt, mirroring schemas/avro/ai.traces.v1.avsc.
-- trace_id is deterministic (event id + step + workflow version + attempt) and every ORDER BY column is
-- stable under redelivery, so a redelivered trace lands on the same sorting key and ReplacingMergeTree
-- keeps only the copy with the highest ingested_at. Readers that must not double count use FINAL.
-- Rows whose started_at is already older than the TTL are dropped at insert time, not only on merge.
CREATE TABLE IF NOT EXISTS {db}.traces
(
    trace_id                   String,
    event_id                   String,
    tenant_id                  LowCardinality(String),
    workflow                   LowCardinality(String),
    workflow_version           LowCardinality(String),
    step                       LowCardinality(String),
    task                       LowCardinality(String),
    attempt                    UInt32,
    gen_ai_operation_name      LowCardinality(String),
    gen_ai_provider_name       LowCardinality(String),
    gen_ai_request_model       LowCardinality(String),
    gen_ai_response_model      LowCardinality(String),
    gen_ai_usage_input_tokens  UInt64,
    gen_ai_usage_output_tokens UInt64,
    prompt_version             LowCardinality(String),
    latency_ms                 Float64,
    cost_usd                   Nullable(Decimal(18, 9)),
    price_version              LowCardinality(String),
    cache_status               LowCardinality(String),
    status                     LowCardinality(String),
    error_class                LowCardinality(Nullable(String)),
    started_at                 DateTime64(6, 'UTC'),
    ingested_at                DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(started_at)
ORDER BY (tenant_id, workflow, step, trace_id)
TTL started_at + INTERVAL 180 DAY;
