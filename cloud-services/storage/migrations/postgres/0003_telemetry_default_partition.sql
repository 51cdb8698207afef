-- Strata schema, version 3 (PostgreSQL): a default partition for telemetry.
--
-- Day partitions are made only for the days around now (a week back, a few days ahead); a
-- reading of any other day (a backfill, a device whose clock is years off) lands here
-- instead of making a partition of its own, so no request can make the partition count grow
-- with the number of days it touches. When a day's partition is made later, its rows move
-- out of this table in the same transaction.
CREATE TABLE IF NOT EXISTS telemetry_default PARTITION OF telemetry DEFAULT;
-- Moving a day out and retention find the default's rows by ts.
CREATE INDEX IF NOT EXISTS telemetry_default_ts_idx ON telemetry_default (ts);
