-- A participant that exists only because it entered through the MUC mirror: it leaves the
-- channel when it leaves the room, and one left behind by a shutdown or crash (the room's
-- occupants are not kept across restarts) is removed when the channel loads.
ALTER TABLE mix_participants ADD COLUMN via_muc BOOLEAN NOT NULL DEFAULT FALSE;
