-- Quality scores, written by evaluation runs (`riverbed eval`, shadow comparisons) so that quality sits
-- next to cost and latency and one query can compare versions on all three.
-- One row per (run, step, metric, label, event): label is '' for a step-level score and names a class or
-- entity type for a per-label one; event_id is '' for an aggregate and the input event's id for a per-event
-- score (e.g. a shadow run's agreement). `support` says how many items a score is over, so averages across
-- runs can be weighted. run_id is deterministic per run, so re-writing a run's scores replaces them.
CREATE TABLE IF NOT EXISTS {db}.evaluations
(
    run_id           String,
    dataset          LowCardinality(String),
    workflow         LowCardinality(String),
    workflow_version LowCardinality(String),
    prompt_version   LowCardinality(String),
    model            LowCardinality(String),
    step             LowCardinality(String),
    metric           LowCardinality(String),
    label            String,
    event_id         String,
    value            Float64,
    support          UInt64,
    details          String CODEC(ZSTD(3)),
    evaluated_at     DateTime64(3, 'UTC'),
    ingested_at      DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(evaluated_at)
ORDER BY (dataset, workflow, step, metric, workflow_version, run_id, label, event_id);
