-- Strata schema, version 2 (SQLite): edge sessions are fenced.
--
-- Every EdgeSync session of an edge takes the next epoch when it starts (TouchEdge), and each
-- batch write checks, under the edge row's lock and in the batch's own transaction, that its
-- session still holds the current epoch. A stream that a newer one replaced (on this replica
-- or another sharing the database) can then neither write nor acknowledge.
ALTER TABLE edges ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0;
