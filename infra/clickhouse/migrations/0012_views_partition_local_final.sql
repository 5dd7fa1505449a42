-- The rollup views read traces FINAL within partitions: since 0011 every copy of a trace is in its event
-- day's partition, so this is exact, and a compacted day is read without merging (docs/analytics.md).
-- Same columns as 0006/0008.

CREATE OR REPLACE VIEW {db}.cost_daily AS
SELECT toDate(started_at) AS day, tenant_id, workflow, task, route,
       count() AS calls,
       sum(gen_ai_usage_input_tokens) AS input_tokens,
       sum(gen_ai_usage_output_tokens) AS output_tokens,
       sum(gen_ai_usage_cache_read_input_tokens) AS cache_read_tokens,
       sum(cost_usd) AS total_cost_usd,
       countIf(cost_usd IS NULL AND status = 'ok') AS unpriced_calls
FROM {db}.traces FINAL
GROUP BY day, tenant_id, workflow, task, route
SETTINGS do_not_merge_across_partitions_select_final = 1;

CREATE OR REPLACE VIEW {db}.model_health_hourly AS
SELECT toStartOfHour(started_at) AS hour, tenant_id, route, task,
       count() AS attempts,
       countIf(status = 'error') AS errors,
       quantileIf(0.5)(latency_ms, status = 'ok') AS p50_ms,
       quantileIf(0.95)(latency_ms, status = 'ok') AS p95_ms,
       quantileIf(0.99)(latency_ms, status = 'ok') AS p99_ms,
       countIf(cache_status != 'miss') / count() AS reuse_rate,
       countIf(call_attempt > 1) / count() AS retry_or_fallback_share
FROM {db}.traces FINAL
GROUP BY hour, tenant_id, route, task
SETTINGS do_not_merge_across_partitions_select_final = 1;

CREATE OR REPLACE VIEW {db}.event_cost AS
SELECT event_id, tenant_id, workflow, workflow_version,
       count() AS attempts,
       groupUniqArray(step) AS steps,
       sum(gen_ai_usage_input_tokens + gen_ai_usage_output_tokens) AS tokens,
       sum(cost_usd) AS total_cost_usd,
       min(started_at) AS first_call_at
FROM {db}.traces FINAL
GROUP BY event_id, tenant_id, workflow, workflow_version
SETTINGS do_not_merge_across_partitions_select_final = 1;
