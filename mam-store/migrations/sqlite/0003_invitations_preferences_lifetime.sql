-- Invitations a channel issued (XEP-0407 §4 MIX invitations; the invitation issue adds the
-- MUC kinds). The token is what the invitee presents; the row says whether it still holds.
CREATE TABLE invitations (
    channel    TEXT NOT NULL,
    token      TEXT NOT NULL,
    kind       TEXT NOT NULL DEFAULT 'mix',
    inviter    TEXT NOT NULL,
    invitee    TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    -- Unix microseconds after which the invitation no longer admits anyone.
    expires_us BIGINT NOT NULL,
    -- pending | used | cancelled
    state      TEXT NOT NULL,
    PRIMARY KEY (channel, token)
);
CREATE INDEX invitations_by_invitee ON invitations (channel, invitee);

-- XEP-0404 §5 user preferences of a participant, as a JSON object of field → value.
ALTER TABLE mix_participants ADD COLUMN preferences TEXT NOT NULL DEFAULT '{}';

-- XEP-0406 'End of Life' (XEP-0369 §7.3.5: the server destroys the channel then), in Unix
-- microseconds; NULL = no end.
ALTER TABLE channels ADD COLUMN end_of_life_us BIGINT;
CREATE INDEX channels_end_of_life ON channels (end_of_life_us);

-- Participants by bare JID across channels (nick registration updates every channel).
CREATE INDEX mix_participants_by_jid ON mix_participants (jid, active);
