-- Strata schema, version 8 (PostgreSQL): device twins.
--
-- A device's desired and reported properties are JSON text on its row, each with a version
-- that every change raises (0: never set) and the time of that change. reported_edge and
-- reported_seq are the edge that sent the reported document and its seq: the cloud keeps the
-- highest seq from an edge, so a document sent twice or overtaken changes nothing, and a
-- device that moved to another edge starts again with that edge's seqs.
--
-- Desired properties travel in the edge's config revision: the trigger that raises the
-- revision on a device change now also fires when desired_version changes.
ALTER TABLE devices ADD COLUMN IF NOT EXISTS desired text NOT NULL DEFAULT '{}';
ALTER TABLE devices ADD COLUMN IF NOT EXISTS desired_version bigint NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN IF NOT EXISTS desired_updated_at bigint NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN IF NOT EXISTS reported text NOT NULL DEFAULT '{}';
ALTER TABLE devices ADD COLUMN IF NOT EXISTS reported_version bigint NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN IF NOT EXISTS reported_updated_at bigint NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN IF NOT EXISTS reported_edge text COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN IF NOT EXISTS reported_seq bigint NOT NULL DEFAULT 0;

DROP TRIGGER IF EXISTS devices_edge_config_update ON devices;
CREATE TRIGGER devices_edge_config_update AFTER UPDATE OF type, attributes, edge_id, desired_version ON devices
  FOR EACH ROW WHEN (OLD.type IS DISTINCT FROM NEW.type OR OLD.attributes IS DISTINCT FROM NEW.attributes
                     OR OLD.edge_id IS DISTINCT FROM NEW.edge_id
                     OR OLD.desired_version IS DISTINCT FROM NEW.desired_version)
  EXECUTE FUNCTION strata_devices_edge_config();
