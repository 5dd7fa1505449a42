-- Two corrections to the 0006 views, found while building the Grafana dashboards:
-- * a failed attempt has no cost (NULL) but is not "unpriced": unpriced_calls now counts only
--   successful calls whose model is missing from the price table, so it flags prices to add;
-- * model_health_hourly gains tenant_id, so per-tenant dashboards and queries can use it.

CREATE OR REPLACE VIEW {db}.cost_daily AS
SELECT toDate(started_at) AS day, tenant_id, workflow, task, route,
       count() AS calls,
       sum(gen_ai_usage_input_tokens) AS input_tokens,
       sum(gen_ai_usage_output_tokens) AS output_tokens,
       sum(gen_ai_usage_cache_read_input_tokens) AS cache_read_tokens,
       sum(cost_usd) AS total_cost_usd,
       countIf(cost_usd IS NULL AND status = 'ok') AS unpriced_calls
FROM {db}.traces FINAL
GROUP BY day, tenant_id, workflow, task, route;

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
GROUP BY hour, tenant_id, route, task;
