-- Strata schema, version 4 (PostgreSQL): config revisions per edge.
--
-- config_revision is the revision of the edge's desired configuration (the devices it
-- serves); the trigger below raises it in the same transaction as every device change that
-- concerns the edge, whatever path made it (the registry API, or an edge batch that
-- registered an unknown device). Touching last_seen_at does not change a configuration, so it
-- raises nothing. applied_revision, applied_at and config_error are what the edge last said
-- in a ConfigAck. An edge starts at revision 1 (its first configuration, maybe without
-- devices), so a new edge is sent one.
ALTER TABLE edges ADD COLUMN IF NOT EXISTS config_revision bigint NOT NULL DEFAULT 1;
ALTER TABLE edges ADD COLUMN IF NOT EXISTS applied_revision bigint NOT NULL DEFAULT 0;
ALTER TABLE edges ADD COLUMN IF NOT EXISTS applied_at bigint NOT NULL DEFAULT 0;
ALTER TABLE edges ADD COLUMN IF NOT EXISTS config_error text NOT NULL DEFAULT '';

CREATE OR REPLACE FUNCTION strata_devices_edge_config() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    UPDATE edges SET config_revision = config_revision + 1
    WHERE tenant_id = NEW.tenant_id AND edge_id = NEW.edge_id;
  ELSIF TG_OP = 'DELETE' THEN
    UPDATE edges SET config_revision = config_revision + 1
    WHERE tenant_id = OLD.tenant_id AND edge_id = OLD.edge_id;
  ELSE
    UPDATE edges SET config_revision = config_revision + 1
    WHERE tenant_id = NEW.tenant_id AND edge_id IN (OLD.edge_id, NEW.edge_id);
  END IF;
  RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS devices_edge_config_insert ON devices;
CREATE TRIGGER devices_edge_config_insert AFTER INSERT ON devices
  FOR EACH ROW WHEN (NEW.edge_id <> '') EXECUTE FUNCTION strata_devices_edge_config();
DROP TRIGGER IF EXISTS devices_edge_config_update ON devices;
CREATE TRIGGER devices_edge_config_update AFTER UPDATE OF type, attributes, edge_id ON devices
  FOR EACH ROW WHEN (OLD.type IS DISTINCT FROM NEW.type OR OLD.attributes IS DISTINCT FROM NEW.attributes
                     OR OLD.edge_id IS DISTINCT FROM NEW.edge_id)
  EXECUTE FUNCTION strata_devices_edge_config();
DROP TRIGGER IF EXISTS devices_edge_config_delete ON devices;
CREATE TRIGGER devices_edge_config_delete AFTER DELETE ON devices
  FOR EACH ROW WHEN (OLD.edge_id <> '') EXECUTE FUNCTION strata_devices_edge_config();
