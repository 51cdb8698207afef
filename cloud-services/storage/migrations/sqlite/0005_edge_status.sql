-- Strata schema, version 5 (SQLite): an edge's connection state and lag.
--
-- connected_epoch is the session epoch of the edge's open stream (0 when none): Hello sets it,
-- the end of that session clears it (a newer session's Hello has set it anew). The edge's
-- heartbeats (every 10 s) raise last_seen_at and carry its lag: readings pending in its
-- buffer and the age of the oldest. A cloud that died with a stream open leaves
-- connected_epoch set; the API shows the edge connected only while last_seen_at is recent.
ALTER TABLE edges ADD COLUMN connected_epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE edges ADD COLUMN pending_readings INTEGER NOT NULL DEFAULT 0;
ALTER TABLE edges ADD COLUMN oldest_pending_age_ms INTEGER NOT NULL DEFAULT 0;
