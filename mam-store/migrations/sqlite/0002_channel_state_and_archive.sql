-- Pubsub state of each channel's nodes (pubsub-core's Change log, applied).
CREATE TABLE pubsub_nodes (
    channel TEXT NOT NULL,
    node    TEXT NOT NULL,
    -- pubsub_core::NodeConfig as JSON.
    config  TEXT NOT NULL,
    PRIMARY KEY (channel, node)
);

CREATE TABLE pubsub_items (
    channel   TEXT NOT NULL,
    node      TEXT NOT NULL,
    item_id   TEXT NOT NULL,
    -- Publication order within the node (a republished id moves to the end).
    position  BIGINT NOT NULL,
    payload   TEXT NOT NULL,
    publisher TEXT,
    PRIMARY KEY (channel, node, item_id)
);
-- MAX(position) per node on every publish, and loading in order, without a scan.
CREATE INDEX pubsub_items_order ON pubsub_items (channel, node, position);

CREATE TABLE pubsub_subscriptions (
    channel TEXT NOT NULL,
    node    TEXT NOT NULL,
    jid     TEXT NOT NULL,
    PRIMARY KEY (channel, node, jid)
);

CREATE TABLE pubsub_affiliations (
    channel     TEXT NOT NULL,
    node        TEXT NOT NULL,
    jid         TEXT NOT NULL,
    affiliation TEXT NOT NULL,
    PRIMARY KEY (channel, node, jid)
);

-- MIX participants: the stable participant id of every bare JID that ever joined (XEP-0369
-- §5.1: kept after leaving, never given to another), and where to deliver.
CREATE TABLE mix_participants (
    channel        TEXT NOT NULL,
    jid            TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    -- Still a participant (false once left; the id stays reserved).
    active         BOOLEAN NOT NULL,
    -- JSON array of full JIDs the user joined from directly; empty = joined through its
    -- server (XEP-0405), deliver to the bare JID.
    direct_jids    TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (channel, jid),
    UNIQUE (channel, participant_id)
);

-- Service-wide registered nicks (XEP-0407 §5).
CREATE TABLE mix_registered_nicks (
    jid  TEXT PRIMARY KEY NOT NULL,
    nick TEXT NOT NULL UNIQUE
);

-- The archive: one row per archived stanza of a channel node (messages, and the history of
-- other nodes, XEP-0442). Order is seq order, never the timestamp alone.
CREATE TABLE archive (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    channel   TEXT NOT NULL,
    node      TEXT NOT NULL,
    -- The archive id (UUIDv7), also the reflected stanza-id.
    id        TEXT NOT NULL UNIQUE,
    -- Unix microseconds.
    ts        BIGINT NOT NULL,
    -- Bare JID of the sender (for 'with' filters and retraction rights).
    sender    TEXT NOT NULL,
    -- The stanza as archived (no 'to'), serialised.
    stanza    TEXT NOT NULL,
    body      TEXT,
    retracted BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX archive_by_channel ON archive (channel, node, seq);
