-- Strata schema, version 13 (PostgreSQL): edge rules. An EDGE rule travels in the config
-- revision of every edge of its tenant, so creating, changing or deleting one raises their
-- revisions; the alarms an edge's rules raise come up numbered, and alarm_seq is the highest
-- the cloud applied (in the same transaction as the alarm changes), so each is applied once.
ALTER TABLE edges ADD COLUMN IF NOT EXISTS alarm_seq bigint NOT NULL DEFAULT 0;

CREATE OR REPLACE FUNCTION strata_rules_edge_config() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    IF OLD.location = 2 THEN
      UPDATE edge_config SET config_revision = config_revision + 1 WHERE tenant_id = OLD.tenant_id;
    END IF;
  ELSIF NEW.location = 2 OR (TG_OP = 'UPDATE' AND OLD.location = 2) THEN
    UPDATE edge_config SET config_revision = config_revision + 1 WHERE tenant_id = NEW.tenant_id;
  END IF;
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS rules_edge_config ON rules;
CREATE TRIGGER rules_edge_config AFTER INSERT OR UPDATE OR DELETE ON rules
  FOR EACH ROW EXECUTE FUNCTION strata_rules_edge_config();
