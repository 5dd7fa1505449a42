-- The gateway's per-attempt facts: which route answered (or failed), the attempt's number within one
-- delivery (retries and fallbacks), the route's breaker state, prompt-cache token counts and the error
-- message. Added with defaults so rows written before this migration read as single-attempt calls.
ALTER TABLE {db}.traces ADD COLUMN IF NOT EXISTS call_attempt UInt16 DEFAULT 1 AFTER attempt;
ALTER TABLE {db}.traces ADD COLUMN IF NOT EXISTS route LowCardinality(String) DEFAULT '' AFTER call_attempt;
ALTER TABLE {db}.traces ADD COLUMN IF NOT EXISTS breaker_state LowCardinality(String) DEFAULT 'closed' AFTER route;
ALTER TABLE {db}.traces ADD COLUMN IF NOT EXISTS gen_ai_usage_cache_read_input_tokens UInt64 DEFAULT 0
    AFTER gen_ai_usage_output_tokens;
ALTER TABLE {db}.traces ADD COLUMN IF NOT EXISTS gen_ai_usage_cache_creation_input_tokens UInt64 DEFAULT 0
    AFTER gen_ai_usage_cache_read_input_tokens;
ALTER TABLE {db}.traces ADD COLUMN IF NOT EXISTS error_message Nullable(String) CODEC(ZSTD(3)) AFTER error_class;
