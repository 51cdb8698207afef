-- Strata schema, version 9 (PostgreSQL): a device's QUEUED commands follow it to another edge.
--
-- A command is bound to the device's edge when it is sent. When the device moves to another
-- edge, its commands that no edge was handed yet (QUEUED, dispatched_at NULL) move with it;
-- those the old edge may hold stay that edge's to end (it enforces their expiry). A device
-- moved to no edge keeps its commands where they are. Lock order: the device row (the
-- update), then its command rows; no path locks them the other way round.
CREATE OR REPLACE FUNCTION strata_commands_follow_device() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE commands SET edge_id = NEW.edge_id
  WHERE tenant_id = NEW.tenant_id AND device_id = NEW.device_id AND state = 1 AND dispatched_at IS NULL;
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS devices_commands_follow ON devices;
CREATE TRIGGER devices_commands_follow AFTER UPDATE OF edge_id ON devices
  FOR EACH ROW WHEN (NEW.edge_id <> '' AND OLD.edge_id IS DISTINCT FROM NEW.edge_id)
  EXECUTE FUNCTION strata_commands_follow_device();
