-- Strata schema, version 4 (SQLite): commands to devices and their history.
--
-- A command is a row of commands, its state the CommandState number (1 QUEUED ... 8
-- CANCELLED; 4 and above are final), and every state it went through a row of
-- command_transitions, at most one per (command, state), so a transition the edge reports
-- twice is recorded once. edge_id is the edge the command goes through (the device's edge
-- when it was sent). cancel_pending: cancelled in the cloud while the edge may hold it; the
-- edge is told until it answers. idempotency_key is NULL when none was given (NULLs never
-- conflict in a unique index, on both backends). params and result are JSON text; result is
-- '' when there is none.
CREATE TABLE commands (
  tenant_id       TEXT NOT NULL,
  command_id      TEXT NOT NULL,
  device_id       TEXT NOT NULL,
  edge_id         TEXT NOT NULL,
  name            TEXT NOT NULL,
  params          TEXT NOT NULL,
  timeout_ms      INTEGER NOT NULL,
  expires_at      INTEGER NOT NULL,
  idempotency_key TEXT,
  state           INTEGER NOT NULL,
  result          TEXT NOT NULL DEFAULT '',
  error           TEXT NOT NULL DEFAULT '',
  cancel_pending  INTEGER NOT NULL DEFAULT 0,
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, command_id)
);
CREATE UNIQUE INDEX commands_idempotency ON commands (tenant_id, device_id, idempotency_key);
CREATE INDEX commands_by_device ON commands (tenant_id, device_id, created_at, command_id);
CREATE INDEX commands_by_edge ON commands (tenant_id, edge_id, state);
CREATE INDEX commands_by_expiry ON commands (state, expires_at);

CREATE TABLE command_transitions (
  tenant_id  TEXT NOT NULL,
  command_id TEXT NOT NULL,
  state      INTEGER NOT NULL,
  at         INTEGER NOT NULL,
  detail     TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (tenant_id, command_id, state)
);
