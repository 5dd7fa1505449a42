-- How many PII items the sink masked in a result's stored entity texts and summary (the result event
-- itself, for downstream services, is unchanged; the analytics copy never holds raw PII).
ALTER TABLE {db}.results ADD COLUMN IF NOT EXISTS redaction_count UInt32 DEFAULT 0 AFTER chunk_count;
