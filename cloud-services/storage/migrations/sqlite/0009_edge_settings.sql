-- Strata schema, version 9 (SQLite): an edge's centrally managed settings (a
-- strata.v1.EdgeSettings as proto JSON), part of its config revision: setting them raises it.
ALTER TABLE edge_config ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
