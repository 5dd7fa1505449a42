-- Whether a result is final or waits for a human (agents/review.py): from the result event's
-- x-riverbed-final / x-riverbed-review-reasons headers. Rows written before this migration read as
-- final with no reasons, which is what they were presented as.
ALTER TABLE {db}.results ADD COLUMN IF NOT EXISTS final UInt8 DEFAULT 1 AFTER redaction_count;
ALTER TABLE {db}.results ADD COLUMN IF NOT EXISTS review_reasons Array(String) DEFAULT [] AFTER final;
