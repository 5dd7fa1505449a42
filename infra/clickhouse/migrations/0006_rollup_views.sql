-- Rollups for dashboards and analysts. Plain views over `FINAL`, not materialized views: a
-- materialized view sees every inserted block, so a redelivered trace (which ReplacingMergeTree later
-- folds into one row) would be counted twice in its sums. Views stay exact at the price of reading the
-- traces table per query (GROUP BY over 1M rows is ~25 ms on chdb, DESIGN.md).

-- Cost and tokens per tenant, task and model, per day.
CREATE VIEW IF NOT EXISTS {db}.cost_daily AS
SELECT toDate(started_at) AS day, tenant_id, workflow, task, route,
       count() AS calls,
       sum(gen_ai_usage_input_tokens) AS input_tokens,
       sum(gen_ai_usage_output_tokens) AS output_tokens,
       sum(gen_ai_usage_cache_read_input_tokens) AS cache_read_tokens,
       sum(cost_usd) AS total_cost_usd,
       countIf(cost_usd IS NULL) AS unpriced_calls
FROM {db}.traces FINAL
GROUP BY day, tenant_id, workflow, task, route;

-- Latency quantiles, errors and reuse per model, per hour.
CREATE VIEW IF NOT EXISTS {db}.model_health_hourly AS
SELECT toStartOfHour(started_at) AS hour, route, task,
       count() AS attempts,
       countIf(status = 'error') AS errors,
       quantileIf(0.5)(latency_ms, status = 'ok') AS p50_ms,
       quantileIf(0.95)(latency_ms, status = 'ok') AS p95_ms,
       quantileIf(0.99)(latency_ms, status = 'ok') AS p99_ms,
       countIf(cache_status != 'miss') / count() AS reuse_rate,
       countIf(call_attempt > 1) / count() AS retry_or_fallback_share
FROM {db}.traces FINAL
GROUP BY hour, route, task;

-- What each event cost, all steps and attempts together: the cost lineage of one ticket or document.
CREATE VIEW IF NOT EXISTS {db}.event_cost AS
SELECT event_id, tenant_id, workflow, workflow_version,
       count() AS attempts,
       groupUniqArray(step) AS steps,
       sum(gen_ai_usage_input_tokens + gen_ai_usage_output_tokens) AS tokens,
       sum(cost_usd) AS total_cost_usd,
       min(started_at) AS first_call_at
FROM {db}.traces FINAL
GROUP BY event_id, tenant_id, workflow, workflow_version;
