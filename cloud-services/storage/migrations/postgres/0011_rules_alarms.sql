-- Strata schema, version 11 (PostgreSQL): rules and the alarms they raise.
--
-- A rule is its definition as the API's JSON (strata.v1.Rule, checked by strata::rules when
-- written) with the columns the stores filter on. An alarm's severity and status are the
-- AlarmSeverity and AlarmStatus numbers; active is 1 while its status is ACTIVE_*, and the
-- partial unique index alarms_one_active keeps at most one active alarm per (tenant,
-- device, type): a raise is an INSERT ... ON CONFLICT on it, so concurrent raises meet in the
-- index, not in a read-then-write. prev_severity is the severity before the last raise (an
-- UPDATE sets it from the old row, so a raise learns whether it changed the severity).
-- Every change of an alarm is a row of alarm_events.
-- Lock order: an alarm row, then its events.
CREATE TABLE IF NOT EXISTS rules (
  tenant_id  text COLLATE "C" NOT NULL,
  rule_id    text COLLATE "C" NOT NULL,
  definition text NOT NULL,
  enabled    integer NOT NULL,
  location   integer NOT NULL,
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL,
  PRIMARY KEY (tenant_id, rule_id)
);

CREATE TABLE IF NOT EXISTS alarms (
  tenant_id  text COLLATE "C" NOT NULL,
  alarm_id   text COLLATE "C" NOT NULL,
  device_id  text COLLATE "C" NOT NULL,
  type       text COLLATE "C" NOT NULL,
  severity   integer NOT NULL,
  status     integer NOT NULL,
  active     integer NOT NULL,
  rule_id    text NOT NULL DEFAULT '',
  start_ts   bigint NOT NULL,
  end_ts     bigint NOT NULL DEFAULT 0,
  ack_ts     bigint NOT NULL DEFAULT 0,
  clear_ts   bigint NOT NULL DEFAULT 0,
  details    text NOT NULL DEFAULT '{}',
  prev_severity integer NOT NULL DEFAULT 0,
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL,
  PRIMARY KEY (tenant_id, alarm_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS alarms_one_active ON alarms (tenant_id, device_id, type) WHERE active = 1;
CREATE INDEX IF NOT EXISTS alarms_by_start ON alarms (tenant_id, start_ts, alarm_id);
CREATE INDEX IF NOT EXISTS alarms_by_device ON alarms (tenant_id, device_id, start_ts);

CREATE TABLE IF NOT EXISTS alarm_events (
  tenant_id text COLLATE "C" NOT NULL,
  alarm_id  text COLLATE "C" NOT NULL,
  seq       integer NOT NULL,
  kind      text NOT NULL,
  severity  integer NOT NULL,
  at        bigint NOT NULL,
  source    text NOT NULL,
  vals      text NOT NULL DEFAULT '{}',
  PRIMARY KEY (tenant_id, alarm_id, seq)
);
