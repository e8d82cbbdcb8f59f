-- XEP-0431 full-text search: an FTS5 index over archive bodies, kept in step by triggers. A
-- retraction sets body to NULL, which takes the words out of the index (REQUIREMENTS RET-01).
CREATE VIRTUAL TABLE archive_fts USING fts5(
    body,
    content = 'archive',
    content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO archive_fts (rowid, body) SELECT seq, body FROM archive WHERE body IS NOT NULL;

CREATE TRIGGER archive_fts_insert AFTER INSERT ON archive WHEN new.body IS NOT NULL BEGIN
    INSERT INTO archive_fts (rowid, body) VALUES (new.seq, new.body);
END;
CREATE TRIGGER archive_fts_delete AFTER DELETE ON archive WHEN old.body IS NOT NULL BEGIN
    INSERT INTO archive_fts (archive_fts, rowid, body) VALUES ('delete', old.seq, old.body);
END;
CREATE TRIGGER archive_fts_update AFTER UPDATE OF body ON archive BEGIN
    INSERT INTO archive_fts (archive_fts, rowid, body)
        SELECT 'delete', old.seq, old.body WHERE old.body IS NOT NULL;
    INSERT INTO archive_fts (rowid, body) SELECT new.seq, new.body WHERE new.body IS NOT NULL;
END;

-- Time-range queries and retention by age.
CREATE INDEX archive_by_time ON archive (channel, node, ts);

-- Retention per channel (NULL: the service default). Only the oldest entries ever go
-- (XEP-0313 §7.1.1: no holes).
ALTER TABLE channels ADD COLUMN retention_days BIGINT;
ALTER TABLE channels ADD COLUMN retention_messages BIGINT;
