-- Strata schema, version 7 (SQLite): device twins.
--
-- A device's desired and reported properties are JSON text on its row, each with a version
-- that every change raises (0: never set) and the time of that change. reported_edge and
-- reported_seq are the edge that sent the reported document and its seq: the cloud keeps the
-- highest seq from an edge, so a document sent twice or overtaken changes nothing, and a
-- device that moved to another edge starts again with that edge's seqs.
--
-- Desired properties travel in the edge's config revision: the trigger that raises the
-- revision on a device change now also fires when desired_version changes.
ALTER TABLE devices ADD COLUMN desired TEXT NOT NULL DEFAULT '{}';
ALTER TABLE devices ADD COLUMN desired_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN desired_updated_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN reported TEXT NOT NULL DEFAULT '{}';
ALTER TABLE devices ADD COLUMN reported_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN reported_updated_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN reported_edge TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN reported_seq INTEGER NOT NULL DEFAULT 0;

DROP TRIGGER devices_edge_config_update;
CREATE TRIGGER devices_edge_config_update AFTER UPDATE OF type, attributes, edge_id, desired_version ON devices
WHEN OLD.type IS NOT NEW.type OR OLD.attributes IS NOT NEW.attributes OR OLD.edge_id IS NOT NEW.edge_id
  OR OLD.desired_version IS NOT NEW.desired_version
BEGIN
  UPDATE edge_config SET config_revision = config_revision + 1
  WHERE tenant_id = NEW.tenant_id AND edge_id IN (OLD.edge_id, NEW.edge_id) AND edge_id <> '';
END;
