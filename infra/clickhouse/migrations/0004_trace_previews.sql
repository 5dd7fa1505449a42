-- Redacted prompt/output previews (PII masked in the worker, before the trace topic) and how many items
-- were masked. Previews are kept for 30 days, the numbers for the table's 180: a column TTL resets an
-- expired preview to its default ('') while the row and its cost stay.
ALTER TABLE {db}.traces ADD COLUMN IF NOT EXISTS input_preview String DEFAULT '' CODEC(ZSTD(3))
    TTL toDateTime(started_at) + INTERVAL 30 DAY AFTER error_message;
ALTER TABLE {db}.traces ADD COLUMN IF NOT EXISTS output_preview String DEFAULT '' CODEC(ZSTD(3))
    TTL toDateTime(started_at) + INTERVAL 30 DAY AFTER input_preview;
ALTER TABLE {db}.traces ADD COLUMN IF NOT EXISTS redaction_count UInt32 DEFAULT 0 AFTER output_preview;
