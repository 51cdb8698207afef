-- Strata schema, version 3 (SQLite): config revisions per edge.
--
-- config_revision is the revision of the edge's desired configuration (the devices it
-- serves); the triggers below raise it in the same transaction as every device change that
-- concerns the edge, whatever path made it (the registry API, or an edge batch that
-- registered an unknown device). Touching last_seen_at does not change a configuration, so it
-- raises nothing. applied_revision, applied_at and config_error are what the edge last said
-- in a ConfigAck. An edge starts at revision 1 (its first configuration, maybe without
-- devices), so a new edge is sent one.
ALTER TABLE edges ADD COLUMN config_revision INTEGER NOT NULL DEFAULT 1;
ALTER TABLE edges ADD COLUMN applied_revision INTEGER NOT NULL DEFAULT 0;
ALTER TABLE edges ADD COLUMN applied_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE edges ADD COLUMN config_error TEXT NOT NULL DEFAULT '';

CREATE TRIGGER devices_edge_config_insert AFTER INSERT ON devices WHEN NEW.edge_id <> ''
BEGIN
  UPDATE edges SET config_revision = config_revision + 1
  WHERE tenant_id = NEW.tenant_id AND edge_id = NEW.edge_id;
END;

CREATE TRIGGER devices_edge_config_update AFTER UPDATE OF type, attributes, edge_id ON devices
WHEN OLD.type IS NOT NEW.type OR OLD.attributes IS NOT NEW.attributes OR OLD.edge_id IS NOT NEW.edge_id
BEGIN
  UPDATE edges SET config_revision = config_revision + 1
  WHERE tenant_id = NEW.tenant_id AND edge_id IN (OLD.edge_id, NEW.edge_id) AND edge_id <> '';
END;

CREATE TRIGGER devices_edge_config_delete AFTER DELETE ON devices WHEN OLD.edge_id <> ''
BEGIN
  UPDATE edges SET config_revision = config_revision + 1
  WHERE tenant_id = OLD.tenant_id AND edge_id = OLD.edge_id;
END;
