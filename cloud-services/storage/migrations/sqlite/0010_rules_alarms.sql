-- Strata schema, version 10 (SQLite): rules and the alarms they raise.
--
-- A rule is its definition as the API's JSON (strata.v1.Rule, checked by strata::rules when
-- written) with the columns the stores filter on. An alarm's severity and status are the
-- AlarmSeverity and AlarmStatus numbers; active is 1 while its status is ACTIVE_*, and the
-- partial unique index alarms_one_active keeps at most one active alarm per (tenant,
-- device, type): a raise is an INSERT ... ON CONFLICT on it, so concurrent raises meet in the
-- index, not in a read-then-write. prev_severity is the severity before the last raise (an
-- UPDATE sets it from the old row, so a raise learns whether it changed the severity).
-- Every change of an alarm is a row of alarm_events.
CREATE TABLE rules (
  tenant_id  TEXT NOT NULL,
  rule_id    TEXT NOT NULL,
  definition TEXT NOT NULL,
  enabled    INTEGER NOT NULL,
  location   INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, rule_id)
);

CREATE TABLE alarms (
  tenant_id  TEXT NOT NULL,
  alarm_id   TEXT NOT NULL,
  device_id  TEXT NOT NULL,
  type       TEXT NOT NULL,
  severity   INTEGER NOT NULL,
  status     INTEGER NOT NULL,
  active     INTEGER NOT NULL,
  rule_id    TEXT NOT NULL DEFAULT '',
  start_ts   INTEGER NOT NULL,
  end_ts     INTEGER NOT NULL DEFAULT 0,
  ack_ts     INTEGER NOT NULL DEFAULT 0,
  clear_ts   INTEGER NOT NULL DEFAULT 0,
  details    TEXT NOT NULL DEFAULT '{}',
  prev_severity INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, alarm_id)
);
CREATE UNIQUE INDEX alarms_one_active ON alarms (tenant_id, device_id, type) WHERE active = 1;
CREATE INDEX alarms_by_start ON alarms (tenant_id, start_ts, alarm_id);
CREATE INDEX alarms_by_device ON alarms (tenant_id, device_id, start_ts);

CREATE TABLE alarm_events (
  tenant_id TEXT NOT NULL,
  alarm_id  TEXT NOT NULL,
  seq       INTEGER NOT NULL,
  kind      TEXT NOT NULL,
  severity  INTEGER NOT NULL,
  at        INTEGER NOT NULL,
  source    TEXT NOT NULL,
  vals      TEXT NOT NULL DEFAULT '{}',
  PRIMARY KEY (tenant_id, alarm_id, seq)
);
