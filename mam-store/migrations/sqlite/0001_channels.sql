-- Channels: one row per channel, shared by the MIX and MUC faces.
CREATE TABLE channels (
    -- The channel's localpart (nodeprepped), the same on both domains.
    name         TEXT PRIMARY KEY NOT NULL,
    display_name TEXT NOT NULL DEFAULT '',
    description  TEXT NOT NULL DEFAULT '',
    -- Listed in disco#items of the service.
    public       BOOLEAN NOT NULL DEFAULT TRUE,
    -- Unix time in microseconds.
    created_at   BIGINT NOT NULL
);
