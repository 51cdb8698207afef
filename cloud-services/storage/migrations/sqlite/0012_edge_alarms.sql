-- Strata schema, version 12 (SQLite): edge rules. An EDGE rule travels in the config revision
-- of every edge of its tenant, so creating, changing or deleting one raises their revisions;
-- the alarms an edge's rules raise come up numbered, and alarm_seq is the highest the cloud
-- applied (in the same transaction as the alarm changes), so each is applied once.
ALTER TABLE edges ADD COLUMN alarm_seq INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER rules_edge_config_insert AFTER INSERT ON rules WHEN NEW.location = 2
BEGIN
  UPDATE edge_config SET config_revision = config_revision + 1 WHERE tenant_id = NEW.tenant_id;
END;
CREATE TRIGGER rules_edge_config_update AFTER UPDATE ON rules WHEN OLD.location = 2 OR NEW.location = 2
BEGIN
  UPDATE edge_config SET config_revision = config_revision + 1 WHERE tenant_id = NEW.tenant_id;
END;
CREATE TRIGGER rules_edge_config_delete AFTER DELETE ON rules WHEN OLD.location = 2
BEGIN
  UPDATE edge_config SET config_revision = config_revision + 1 WHERE tenant_id = OLD.tenant_id;
END;
