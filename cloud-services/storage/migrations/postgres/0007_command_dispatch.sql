-- Strata schema, version 7 (PostgreSQL): when a QUEUED command was first handed to its edge's
-- stream. The cloud's expiry ends at expires_at only a command no edge was given; one that
-- was given is the edge's to end (it enforces the same expires_at and reports EXPIRED or what
-- happened), and the cloud ends it only after a long grace, should that edge never return.
ALTER TABLE commands ADD COLUMN dispatched_at BIGINT;
