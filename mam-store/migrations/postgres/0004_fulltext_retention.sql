-- XEP-0431 full-text search: a generated tsvector over archive bodies with a GIN index. The
-- 'simple' configuration: no stemming, no stop words, the same for every language. A retraction
-- sets body to NULL, which empties the vector (REQUIREMENTS RET-01).
ALTER TABLE archive ADD COLUMN body_tsv tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', coalesce(body, ''))) STORED;
CREATE INDEX archive_fts ON archive USING GIN (body_tsv);

-- Time-range queries and retention by age.
CREATE INDEX archive_by_time ON archive (channel, node, ts);

-- Retention per channel (NULL: the service default). Only the oldest entries ever go
-- (XEP-0313 §7.1.1: no holes).
ALTER TABLE channels ADD COLUMN retention_days BIGINT;
ALTER TABLE channels ADD COLUMN retention_messages BIGINT;
