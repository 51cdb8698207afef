-- Strata schema, version 1 (SQLite). The same tables as the PostgreSQL schema: tenant_id
-- everywhere, device-owned tables keyed by (tenant_id, device_id, ...). Text compares
-- bytewise (BINARY), like the "C" collation used on PostgreSQL. labels and attributes are
-- JSON objects stored as text. Times are int64 milliseconds since the Unix epoch.

CREATE TABLE devices (
  tenant_id    TEXT NOT NULL,
  device_id    TEXT NOT NULL,
  name         TEXT NOT NULL DEFAULT '',
  type         TEXT NOT NULL DEFAULT '',
  labels       TEXT NOT NULL DEFAULT '{}',
  attributes   TEXT NOT NULL DEFAULT '{}',
  edge_id      TEXT NOT NULL DEFAULT '',
  created_at   INTEGER NOT NULL,
  updated_at   INTEGER NOT NULL,
  last_seen_at INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, device_id)
) WITHOUT ROWID;

CREATE TABLE edges (
  tenant_id       TEXT NOT NULL,
  edge_id         TEXT NOT NULL,
  name            TEXT NOT NULL DEFAULT '',
  labels          TEXT NOT NULL DEFAULT '{}',
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL,
  last_seen_at    INTEGER NOT NULL DEFAULT 0,
  high_water_mark INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, edge_id)
) WITHOUT ROWID;

CREATE TABLE telemetry (
  tenant_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  key       TEXT NOT NULL,
  ts        INTEGER NOT NULL,
  v_double  REAL,
  v_int     INTEGER,
  v_bool    INTEGER,
  v_string  TEXT,
  PRIMARY KEY (tenant_id, device_id, key, ts),
  CHECK ((v_double IS NOT NULL) + (v_int IS NOT NULL) + (v_bool IS NOT NULL)
         + (v_string IS NOT NULL) = 1)
) WITHOUT ROWID;
CREATE INDEX telemetry_device_ts_idx ON telemetry (tenant_id, device_id, ts, key);

CREATE TABLE telemetry_latest (
  tenant_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  key       TEXT NOT NULL,
  ts        INTEGER NOT NULL,
  v_double  REAL,
  v_int     INTEGER,
  v_bool    INTEGER,
  v_string  TEXT,
  PRIMARY KEY (tenant_id, device_id, key),
  CHECK ((v_double IS NOT NULL) + (v_int IS NOT NULL) + (v_bool IS NOT NULL)
         + (v_string IS NOT NULL) = 1)
) WITHOUT ROWID;
