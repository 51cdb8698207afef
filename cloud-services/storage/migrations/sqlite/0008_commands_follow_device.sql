-- Strata schema, version 8 (SQLite): a device's QUEUED commands follow it to another edge.
--
-- A command is bound to the device's edge when it is sent. When the device moves to another
-- edge, its commands that no edge was handed yet (QUEUED, dispatched_at NULL) move with it;
-- those the old edge may hold stay that edge's to end (it enforces their expiry). A device
-- moved to no edge keeps its commands where they are.
CREATE TRIGGER devices_commands_follow AFTER UPDATE OF edge_id ON devices
WHEN NEW.edge_id <> '' AND OLD.edge_id IS NOT NEW.edge_id
BEGIN
  UPDATE commands SET edge_id = NEW.edge_id
  WHERE tenant_id = NEW.tenant_id AND device_id = NEW.device_id AND state = 1 AND dispatched_at IS NULL;
END;
