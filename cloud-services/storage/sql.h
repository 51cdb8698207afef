// The SQL that both backends run as it is, written once. Placeholders are SQLite's numbered
// ones (?1, ?2, ...); the PostgreSQL backend turns them into $1, $2, ... (ForPostgres()).
// Only portable SQL belongs here: CAST instead of ::, CASE instead of GREATEST/max, no JSON or
// array operators. What the dialects spell differently (label containment, key lists, the
// cursor, aggregation, COPY and staging, partitions) stays in the backend's own files.
//
// The column order of the device, edge and reading SELECTs is the one storage/rows.h reads.
#pragma once

#include <string>
#include <string_view>

namespace strata::storage::sql {

// ---- devices ----------------------------------------------------------------------------

inline constexpr std::string_view kInsertDevice =
    "INSERT INTO devices (tenant_id, device_id, name, type, labels, attributes, edge_id,"
    " created_at, updated_at, last_seen_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 0)";
inline constexpr std::string_view kSelectDevice =
    "SELECT device_id, name, type, CAST(labels AS text), CAST(attributes AS text), edge_id, created_at,"
    " updated_at, last_seen_at FROM devices WHERE tenant_id = ?1 AND device_id = ?2";
// ?3, ?5, ?7, ?9, ?12: whether name, type, labels, attributes, edge_id change.
inline constexpr std::string_view kUpdateDevice =
    "UPDATE devices SET"
    " name = CASE WHEN ?3 THEN ?4 ELSE name END,"
    " type = CASE WHEN ?5 THEN ?6 ELSE type END,"
    " labels = CASE WHEN ?7 THEN ?8 ELSE labels END,"
    " attributes = CASE WHEN ?9 THEN ?10 ELSE attributes END,"
    " edge_id = CASE WHEN ?12 THEN ?13 ELSE edge_id END,"
    " updated_at = ?11"
    " WHERE tenant_id = ?1 AND device_id = ?2"
    " RETURNING device_id, name, type, CAST(labels AS text), CAST(attributes AS text), edge_id, created_at,"
    " updated_at, last_seen_at";
inline constexpr std::string_view kDeleteDevice = "DELETE FROM devices WHERE tenant_id = ?1 AND device_id = ?2";
inline constexpr std::string_view kDeleteDeviceTelemetry =
    "DELETE FROM telemetry WHERE tenant_id = ?1 AND device_id = ?2";
inline constexpr std::string_view kDeleteDeviceLatest =
    "DELETE FROM telemetry_latest WHERE tenant_id = ?1 AND device_id = ?2";
// Raises last_seen_at to ?3; changes no row when the device does not exist. PostgreSQL locks
// the row for the rest of the write.
inline constexpr std::string_view kTouchDevice =
    "UPDATE devices SET last_seen_at = CASE WHEN last_seen_at >= ?3 THEN last_seen_at ELSE ?3 END"
    " WHERE tenant_id = ?1 AND device_id = ?2";

// A device the edge names that the cloud does not know yet, registered for the edge (its
// readings and its twin reports both do this; ?4: now).
inline constexpr std::string_view kAutoCreateDevice =
    "INSERT INTO devices (tenant_id, device_id, name, edge_id, created_at, updated_at)"
    " VALUES (?1, ?2, ?2, ?3, ?4, ?4) ON CONFLICT (tenant_id, device_id) DO NOTHING";

// ---- edges ------------------------------------------------------------------------------

inline constexpr std::string_view kInsertEdge =
    "INSERT INTO edges (tenant_id, edge_id, name, labels, created_at, updated_at, last_seen_at,"
    " high_water_mark) VALUES (?1, ?2, ?3, ?4, ?5, ?5, 0, 0)";
inline constexpr std::string_view kSelectEdge =
    "SELECT e.edge_id, e.name, CAST(e.labels AS text), e.created_at, e.updated_at, e.last_seen_at,"
    " e.high_water_mark, c.config_revision, c.applied_revision, c.applied_at, c.config_error,"
    " CASE WHEN e.connected_epoch > 0 AND e.connected_epoch = e.session_epoch THEN 1 ELSE 0 END,"
    " e.pending_readings, e.oldest_pending_age_ms, c.settings"
    " FROM edges e JOIN edge_config c ON c.tenant_id = e.tenant_id AND c.edge_id = e.edge_id"
    " WHERE e.tenant_id = ?1 AND e.edge_id = ?2";
inline constexpr std::string_view kListEdges =
    "SELECT e.edge_id, e.name, CAST(e.labels AS text), e.created_at, e.updated_at, e.last_seen_at,"
    " e.high_water_mark, c.config_revision, c.applied_revision, c.applied_at, c.config_error,"
    " CASE WHEN e.connected_epoch > 0 AND e.connected_epoch = e.session_epoch THEN 1 ELSE 0 END,"
    " e.pending_readings, e.oldest_pending_age_ms, c.settings"
    " FROM edges e JOIN edge_config c ON c.tenant_id = e.tenant_id AND c.edge_id = e.edge_id"
    " WHERE e.tenant_id = ?1 AND e.edge_id > ?2 ORDER BY e.edge_id LIMIT ?3";
// The edge's configuration: its revision and the devices it serves, in one statement (so one
// snapshot on both backends: the revision always matches the devices). One row per device, or
// one row of NULL device columns for an edge without devices; no row for an unknown edge.
inline constexpr std::string_view kSelectEdgeConfig =
    "SELECT c.config_revision, d.device_id, d.type, CAST(d.attributes AS text), d.desired, d.desired_version,"
    " c.settings"
    " FROM edge_config c LEFT JOIN devices d ON d.tenant_id = c.tenant_id AND d.edge_id = c.edge_id"
    " WHERE c.tenant_id = ?1 AND c.edge_id = ?2 ORDER BY d.device_id";
inline constexpr std::string_view kSelectConfigState =
    "SELECT config_revision, applied_revision FROM edge_config WHERE tenant_id = ?1 AND edge_id = ?2";
// ConfigAck, applied: the applied revision only moves forward, and never past the desired one.
inline constexpr std::string_view kConfigApplied =
    "UPDATE edge_config SET applied_revision = ?3, applied_at = ?4, config_error = ''"
    " WHERE tenant_id = ?1 AND edge_id = ?2 AND applied_revision <= ?3 AND config_revision >= ?3";
// ConfigAck, refused (?4: its revision): the reason is kept, unless a later revision was
// applied since; the applied revision stays.
inline constexpr std::string_view kConfigRefused =
    "UPDATE edge_config SET config_error = ?3 WHERE tenant_id = ?1 AND edge_id = ?2 AND applied_revision < ?4";
// Hello: creates the edge if new and starts its next session (the epoch fences older ones).
inline constexpr std::string_view kTouchEdge =
    "INSERT INTO edges (tenant_id, edge_id, name, created_at, updated_at, last_seen_at, session_epoch, connected_epoch)"
    " VALUES (?1, ?2, ?2, ?3, ?3, ?3, 1, 1)"
    " ON CONFLICT (tenant_id, edge_id) DO UPDATE SET last_seen_at = excluded.last_seen_at,"
    " session_epoch = edges.session_epoch + 1, connected_epoch = edges.session_epoch + 1"
    " RETURNING high_water_mark, session_epoch, alarm_seq";
inline constexpr std::string_view kEnsureEdge =
    "INSERT INTO edges (tenant_id, edge_id, name, created_at, updated_at)"
    " VALUES (?1, ?2, ?2, ?3, ?3) ON CONFLICT (tenant_id, edge_id) DO NOTHING";
inline constexpr std::string_view kSelectEdgeMark =
    "SELECT high_water_mark, session_epoch FROM edges WHERE tenant_id = ?1 AND edge_id = ?2";
inline constexpr std::string_view kAdvanceEdge =
    "UPDATE edges SET high_water_mark = CASE WHEN high_water_mark >= ?3 THEN high_water_mark ELSE ?3 END,"
    " last_seen_at = ?4 WHERE tenant_id = ?1 AND edge_id = ?2 RETURNING high_water_mark";

// An edge's heartbeat (?3: its session's epoch; an older session's changes nothing).
inline constexpr std::string_view kEdgeHeartbeat =
    "UPDATE edges SET last_seen_at = CASE WHEN last_seen_at >= ?4 THEN last_seen_at ELSE ?4 END,"
    " pending_readings = ?5, oldest_pending_age_ms = ?6"
    " WHERE tenant_id = ?1 AND edge_id = ?2 AND session_epoch = ?3";
// The session of epoch ?3 ended (a newer one, if any, has set its own epoch).
inline constexpr std::string_view kEdgeSessionEnded =
    "UPDATE edges SET connected_epoch = 0 WHERE tenant_id = ?1 AND edge_id = ?2 AND connected_epoch = ?3";

// ---- database ---------------------------------------------------------------------------

inline constexpr std::string_view kPing = "SELECT 1";

// `statement` with ?N placeholders as $N, for PostgreSQL. The statements above hold no other
// question mark.
std::string ForPostgres(std::string_view statement);

}  // namespace strata::storage::sql
