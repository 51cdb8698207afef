-- Strata schema, version 5 (PostgreSQL): commands to devices and their history.
--
-- A command is a row of commands, its state the CommandState number (1 QUEUED ... 8
-- CANCELLED; 4 and above are final), and every state it went through a row of
-- command_transitions, at most one per (command, state), so a transition the edge reports
-- twice is recorded once. edge_id is the edge the command goes through (the device's edge
-- when it was sent). cancel_pending: cancelled in the cloud while the edge may hold it; the
-- edge is told until it answers. idempotency_key is NULL when none was given (NULLs never
-- conflict in a unique index, on both backends). params and result are JSON text; result is
-- '' when there is none. Lock order: a command row, then its transitions.
CREATE TABLE IF NOT EXISTS commands (
  tenant_id       text COLLATE "C" NOT NULL,
  command_id      text COLLATE "C" NOT NULL,
  device_id       text COLLATE "C" NOT NULL,
  edge_id         text COLLATE "C" NOT NULL,
  name            text NOT NULL,
  params          text NOT NULL,
  timeout_ms      bigint NOT NULL,
  expires_at      bigint NOT NULL,
  idempotency_key text,
  state           integer NOT NULL,
  result          text NOT NULL DEFAULT '',
  error           text NOT NULL DEFAULT '',
  cancel_pending  integer NOT NULL DEFAULT 0,
  created_at      bigint NOT NULL,
  updated_at      bigint NOT NULL,
  PRIMARY KEY (tenant_id, command_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS commands_idempotency ON commands (tenant_id, device_id, idempotency_key);
CREATE INDEX IF NOT EXISTS commands_by_device ON commands (tenant_id, device_id, created_at, command_id);
CREATE INDEX IF NOT EXISTS commands_by_edge ON commands (tenant_id, edge_id, state);
CREATE INDEX IF NOT EXISTS commands_by_expiry ON commands (state, expires_at);

CREATE TABLE IF NOT EXISTS command_transitions (
  tenant_id  text COLLATE "C" NOT NULL,
  command_id text COLLATE "C" NOT NULL,
  state      integer NOT NULL,
  at         bigint NOT NULL,
  detail     text NOT NULL DEFAULT '',
  PRIMARY KEY (tenant_id, command_id, state)
);
