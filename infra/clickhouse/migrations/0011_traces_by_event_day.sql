-- Traces move to daily partitions of the causing event's time, and gain a per-call fallback flag.
--
-- Why: a report over a month of traces read `FINAL` across every part of a monthly partition, and with
-- a random trace id in the key every part overlaps every other: ~8 s at 10M rows on 2 cores
-- (docs/analytics.md). `event_time` is the processed event's ce_time, the same on every redelivery and
-- re-run, so all copies of a trace land in one day's partition. Readers can then use
-- `do_not_merge_across_partitions_select_final = 1` without double counting, and a partition that holds
-- a single part (closed days, once the sink's compaction has run: sinks/compaction.py) is read without
-- any merging at all. `started_at` stays the call's own time; TTLs still count from it.
--
-- The sorting key gains the event's hour after the tenant (tenant and time first: a tenant's recent
-- traces are together, and the parts a sink writes one after another cover different hours, so
-- FINAL has less to merge in the open day). Every key column is the same on a trace's copies.
--
-- `fell_back` is true on the call where the gateway first left the invocation's first route, so the
-- fallback rate is a count instead of a GROUP BY over every (event, step, attempt).
--
-- Partition keys cannot be altered, so the table is rebuilt: rows written before this migration get
-- `event_time = started_at` (they never recorded ce_time) and `fell_back` computed from the routes of
-- their invocation. A trace re-run after the migration for an event processed before it may land in
-- another day's partition than its old copy when the two times straddle midnight; such an event can
-- count twice until the old copy's TTL, an edge bounded by the events in flight during the migration.

CREATE TABLE IF NOT EXISTS {db}.traces_0011
(
    trace_id                                 String,
    event_id                                 String,
    tenant_id                                LowCardinality(String),
    workflow                                 LowCardinality(String),
    workflow_version                         LowCardinality(String),
    step                                     LowCardinality(String),
    task                                     LowCardinality(String),
    attempt                                  UInt32,
    call_attempt                             UInt16 DEFAULT 1,
    fell_back                                Bool DEFAULT false,
    route                                    LowCardinality(String) DEFAULT '',
    breaker_state                            LowCardinality(String) DEFAULT 'closed',
    gen_ai_operation_name                    LowCardinality(String),
    gen_ai_provider_name                     LowCardinality(String),
    gen_ai_request_model                     LowCardinality(String),
    gen_ai_response_model                    LowCardinality(String),
    gen_ai_usage_input_tokens                UInt64,
    gen_ai_usage_output_tokens               UInt64,
    gen_ai_usage_cache_read_input_tokens     UInt64 DEFAULT 0,
    gen_ai_usage_cache_creation_input_tokens UInt64 DEFAULT 0,
    prompt_version                           LowCardinality(String),
    latency_ms                               Float64,
    cost_usd                                 Nullable(Decimal(18, 9)),
    price_version                            LowCardinality(String),
    cache_status                             LowCardinality(String),
    status                                   LowCardinality(String),
    error_class                              LowCardinality(Nullable(String)),
    error_message                            Nullable(String) CODEC(ZSTD(3)),
    input_preview                            String DEFAULT '' CODEC(ZSTD(3)) TTL toDateTime(started_at) + INTERVAL 30 DAY,
    output_preview                           String DEFAULT '' CODEC(ZSTD(3)) TTL toDateTime(started_at) + INTERVAL 30 DAY,
    redaction_count                          UInt32 DEFAULT 0,
    started_at                               DateTime64(6, 'UTC'),
    event_time                               DateTime64(6, 'UTC'),
    ingested_at                              DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMMDD(event_time)
ORDER BY (tenant_id, toStartOfHour(event_time), workflow, step, trace_id)
TTL started_at + INTERVAL 180 DAY;

INSERT INTO {db}.traces_0011
(
    trace_id, event_id, tenant_id, workflow, workflow_version, step, task, attempt, call_attempt, route,
    breaker_state, gen_ai_operation_name, gen_ai_provider_name, gen_ai_request_model, gen_ai_response_model,
    gen_ai_usage_input_tokens, gen_ai_usage_output_tokens, gen_ai_usage_cache_read_input_tokens,
    gen_ai_usage_cache_creation_input_tokens, prompt_version, latency_ms, cost_usd, price_version, cache_status,
    status, error_class, error_message, input_preview, output_preview, redaction_count, started_at, ingested_at,
    fell_back, event_time
)
SELECT trace_id, event_id, tenant_id, workflow, workflow_version, step, task, attempt, call_attempt, route,
       breaker_state, gen_ai_operation_name, gen_ai_provider_name, gen_ai_request_model, gen_ai_response_model,
       gen_ai_usage_input_tokens, gen_ai_usage_output_tokens, gen_ai_usage_cache_read_input_tokens,
       gen_ai_usage_cache_creation_input_tokens, prompt_version, latency_ms, cost_usd, price_version, cache_status,
       status, error_class, error_message, input_preview, output_preview, redaction_count, started_at, ingested_at,
       trace_id IN (
           -- the first call off the first route, per invocation that made more than one call (few:
           -- only those are grouped, so the rebuild needs no sort of the whole table)
           SELECT arrayFirst(c -> c.2 != calls[1].2, calls).3 AS first_fallback
           FROM
           (
               SELECT arraySort(c -> c.1, groupArray((call_attempt, route, trace_id))) AS calls
               FROM {db}.traces FINAL
               WHERE (event_id, workflow_version, step, attempt) IN (
                   SELECT event_id, workflow_version, step, attempt FROM {db}.traces WHERE call_attempt > 1
               )
               GROUP BY event_id, workflow_version, step, attempt
           )
           WHERE first_fallback != ''
       ) AS fell_back,
       started_at AS event_time
FROM {db}.traces FINAL;

EXCHANGE TABLES {db}.traces AND {db}.traces_0011;

DROP TABLE {db}.traces_0011;
