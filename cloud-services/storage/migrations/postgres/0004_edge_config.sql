-- Strata schema, version 4 (PostgreSQL): config revisions per edge.
--
-- edge_config holds, per edge, the revision of its desired configuration (the devices it
-- serves) and what the edge last said of it in a ConfigAck (applied_revision, applied_at,
-- config_error). It is a table of its own, not columns of edges: the telemetry path locks
-- the edge row, then device rows; a registry write locks a device row, then (through the
-- trigger) this row. With the revision on the edge row those two orders would deadlock; with
-- it here, edge_config is always locked last.
--
-- The trigger below raises config_revision in the same transaction as every device change
-- that concerns the edge, whatever path made it (the registry API, or an edge batch that
-- registered an unknown device). Touching last_seen_at raises nothing, so telemetry never
-- makes a revision. An edge starts at revision 1 (its first configuration, maybe without
-- devices), so a new edge is sent one.
CREATE TABLE IF NOT EXISTS edge_config (
  tenant_id        text COLLATE "C" NOT NULL,
  edge_id          text COLLATE "C" NOT NULL,
  config_revision  bigint NOT NULL DEFAULT 1,
  applied_revision bigint NOT NULL DEFAULT 0,
  applied_at       bigint NOT NULL DEFAULT 0,
  config_error     text NOT NULL DEFAULT '',
  PRIMARY KEY (tenant_id, edge_id)
);
INSERT INTO edge_config (tenant_id, edge_id) SELECT tenant_id, edge_id FROM edges
  ON CONFLICT (tenant_id, edge_id) DO NOTHING;

CREATE OR REPLACE FUNCTION strata_edges_config() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO edge_config (tenant_id, edge_id) VALUES (NEW.tenant_id, NEW.edge_id)
    ON CONFLICT (tenant_id, edge_id) DO NOTHING;
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS edges_config_insert ON edges;
CREATE TRIGGER edges_config_insert AFTER INSERT ON edges
  FOR EACH ROW EXECUTE FUNCTION strata_edges_config();

CREATE OR REPLACE FUNCTION strata_devices_edge_config() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    UPDATE edge_config SET config_revision = config_revision + 1
    WHERE tenant_id = NEW.tenant_id AND edge_id = NEW.edge_id;
  ELSIF TG_OP = 'DELETE' THEN
    UPDATE edge_config SET config_revision = config_revision + 1
    WHERE tenant_id = OLD.tenant_id AND edge_id = OLD.edge_id;
  ELSE
    UPDATE edge_config SET config_revision = config_revision + 1
    WHERE tenant_id = NEW.tenant_id AND edge_id IN (OLD.edge_id, NEW.edge_id) AND edge_id <> '';
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
