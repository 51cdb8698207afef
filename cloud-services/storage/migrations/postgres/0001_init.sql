-- Strata schema, version 1 (PostgreSQL).
--
-- Every table carries tenant_id, and the primary keys of the device-owned tables start with
-- (tenant_id, device_id), so the schema can be distributed by device without change.
-- Identifiers and keys use the "C" collation: byte order, the same as SQLite's, so ordering
-- and keyset paging agree across backends and do not depend on the server's locale.
-- Times are int64 milliseconds since the Unix epoch.

CREATE TABLE devices (
  tenant_id    text COLLATE "C" NOT NULL,
  device_id    text COLLATE "C" NOT NULL,
  name         text NOT NULL DEFAULT '',
  type         text NOT NULL DEFAULT '',
  labels       jsonb NOT NULL DEFAULT '{}',
  attributes   jsonb NOT NULL DEFAULT '{}',
  edge_id      text COLLATE "C" NOT NULL DEFAULT '',
  created_at   bigint NOT NULL,
  updated_at   bigint NOT NULL,
  last_seen_at bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, device_id)
);
-- Serves the label filter (labels @> '{"site":"berlin"}').
CREATE INDEX devices_labels_idx ON devices USING gin (labels jsonb_path_ops);

CREATE TABLE edges (
  tenant_id       text COLLATE "C" NOT NULL,
  edge_id         text COLLATE "C" NOT NULL,
  name            text NOT NULL DEFAULT '',
  labels          jsonb NOT NULL DEFAULT '{}',
  created_at      bigint NOT NULL,
  updated_at      bigint NOT NULL,
  last_seen_at    bigint NOT NULL DEFAULT 0,
  high_water_mark bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, edge_id)
);

-- One value per (device, key, ts): exactly one of the value columns is set. Range-partitioned
-- by ts, one partition per UTC day (telemetry_pYYYYMMDD), created ahead by the backend;
-- retention drops whole partitions.
CREATE TABLE telemetry (
  tenant_id text COLLATE "C" NOT NULL,
  device_id text COLLATE "C" NOT NULL,
  key       text COLLATE "C" NOT NULL,
  ts        bigint NOT NULL,
  v_double  double precision,
  v_int     bigint,
  v_bool    boolean,
  v_string  text,
  PRIMARY KEY (tenant_id, device_id, key, ts),
  CHECK (num_nonnulls(v_double, v_int, v_bool, v_string) = 1)
) PARTITION BY RANGE (ts);
-- Serves time-ordered queries across keys: ORDER BY ts, key.
CREATE INDEX telemetry_device_ts_idx ON telemetry (tenant_id, device_id, ts, key);

-- The newest value of each key of each device.
CREATE TABLE telemetry_latest (
  tenant_id text COLLATE "C" NOT NULL,
  device_id text COLLATE "C" NOT NULL,
  key       text COLLATE "C" NOT NULL,
  ts        bigint NOT NULL,
  v_double  double precision,
  v_int     bigint,
  v_bool    boolean,
  v_string  text,
  PRIMARY KEY (tenant_id, device_id, key),
  CHECK (num_nonnulls(v_double, v_int, v_bool, v_string) = 1)
);
