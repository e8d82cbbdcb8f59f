-- Invitations that expire (seed 000: a time to live; the room tells the invitee and the
-- occupants when one lapses): the sweep looks for pending ones past their time.
CREATE INDEX invitations_pending_expiry ON invitations (state, expires_us);
