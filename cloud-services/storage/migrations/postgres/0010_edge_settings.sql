-- Strata schema, version 10 (PostgreSQL): an edge's centrally managed settings (a
-- strata.v1.EdgeSettings as proto JSON), part of its config revision: setting them raises it.
ALTER TABLE edge_config ADD COLUMN IF NOT EXISTS settings text NOT NULL DEFAULT '{}';
