-- The trace sink inserts the ai.traces.v1 Avro records as they came off the topic (FORMAT Avro, decoded
-- by ClickHouse), so ClickHouse stamps the arrival time itself. Rows inserted with an explicit
-- ingested_at (the sink's fallback path, older sinks) keep theirs.
ALTER TABLE {db}.traces MODIFY COLUMN ingested_at DEFAULT now64(3, 'UTC');
