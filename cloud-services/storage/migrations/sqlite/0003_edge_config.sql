-- Strata schema, version 3 (SQLite): config revisions per edge.
--
-- edge_config holds, per edge, the revision of its desired configuration (the devices it
-- serves) and what the edge last said of it in a ConfigAck (applied_revision, applied_at,
-- config_error). It is a table of its own, not columns of edges, so that the telemetry path
-- (which locks the edge row first) and registry writes (which change a device, then raise
-- the revision here) take their locks in one order; on SQLite, whose writers are serialised,
-- it keeps the two schemas alike.
--
-- The triggers below raise config_revision in the same transaction as every device change
-- that concerns the edge, whatever path made it (the registry API, or an edge batch that
-- registered an unknown device). Touching last_seen_at raises nothing, so telemetry never
-- makes a revision. An edge starts at revision 1 (its first configuration, maybe without
-- devices), so a new edge is sent one.
CREATE TABLE edge_config (
  tenant_id        TEXT NOT NULL,
  edge_id          TEXT NOT NULL,
  config_revision  INTEGER NOT NULL DEFAULT 1,
  applied_revision INTEGER NOT NULL DEFAULT 0,
  applied_at       INTEGER NOT NULL DEFAULT 0,
  config_error     TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (tenant_id, edge_id)
);
INSERT INTO edge_config (tenant_id, edge_id) SELECT tenant_id, edge_id FROM edges;

CREATE TRIGGER edges_config_insert AFTER INSERT ON edges
BEGIN
  INSERT INTO edge_config (tenant_id, edge_id) VALUES (NEW.tenant_id, NEW.edge_id)
  ON CONFLICT (tenant_id, edge_id) DO NOTHING;
END;

CREATE TRIGGER devices_edge_config_insert AFTER INSERT ON devices WHEN NEW.edge_id <> ''
BEGIN
  UPDATE edge_config SET config_revision = config_revision + 1
  WHERE tenant_id = NEW.tenant_id AND edge_id = NEW.edge_id;
END;

CREATE TRIGGER devices_edge_config_update AFTER UPDATE OF type, attributes, edge_id ON devices
WHEN OLD.type IS NOT NEW.type OR OLD.attributes IS NOT NEW.attributes OR OLD.edge_id IS NOT NEW.edge_id
BEGIN
  UPDATE edge_config SET config_revision = config_revision + 1
  WHERE tenant_id = NEW.tenant_id AND edge_id IN (OLD.edge_id, NEW.edge_id) AND edge_id <> '';
END;

CREATE TRIGGER devices_edge_config_delete AFTER DELETE ON devices WHEN OLD.edge_id <> ''
BEGIN
  UPDATE edge_config SET config_revision = config_revision + 1
  WHERE tenant_id = OLD.tenant_id AND edge_id = OLD.edge_id;
END;
