// Storage interfaces of the cloud services: one interface per aggregate (devices, edges,
// telemetry), with a PostgreSQL backend (production) and a SQLite backend (the embedded
// default). Services depend only on these interfaces; OpenDatabase() picks the backend from
// the database URL.
//
// All methods are safe to call from many threads at once. Expected failures come back as
// absl::Status values with the codes the APIs return: NOT_FOUND for an unknown device or edge,
// ALREADY_EXISTS for a duplicate id, INVALID_ARGUMENT for input the backend cannot take,
// UNAVAILABLE when the database cannot be reached. Every string is passed to the database as
// a bound parameter or COPY data, never spliced into SQL.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <nlohmann/json_fwd.hpp>

#include "strata/clock.h"

#include "strata/v1/commands.pb.h"
#include "strata/v1/common.pb.h"
#include "strata/v1/edgesync.pb.h"
#include "strata/v1/registry.pb.h"
#include "strata/v1/rules.pb.h"
#include "strata/v1/telemetry.pb.h"

namespace strata::storage {

inline constexpr std::string_view kDefaultTenant = "default";

// ---------------------------------------------------------------------------------------
// Devices

struct DeviceListQuery {
  int page_size = 100;
  // Return devices whose id sorts after this one (keyset paging); empty for the first page.
  std::string after_device_id;
  // Every (label, value) pair must be present on the device.
  std::vector<std::pair<std::string, std::string>> labels;
};

struct DeviceUpdate {
  bool name = false;
  bool type = false;
  bool labels = false;
  bool attributes = false;
  bool edge_id = false;  // moves the device to another edge (empty: to none)
};

class DeviceStore {
 public:
  virtual ~DeviceStore() = default;
  // Sets tenant_id, created_at = updated_at = now; ALREADY_EXISTS if the id is taken.
  virtual absl::StatusOr<v1::Device> CreateDevice(std::string_view tenant, const v1::Device& device) = 0;
  virtual absl::StatusOr<v1::Device> GetDevice(std::string_view tenant, std::string_view device_id) = 0;
  // Ordered by device_id; at most page_size + 1 rows are read so the caller can tell whether
  // there is a next page: the result holds up to page_size + 1 devices.
  virtual absl::StatusOr<std::vector<v1::Device>> ListDevices(std::string_view tenant,
                                                              const DeviceListQuery& query) = 0;
  // Replaces the fields chosen in `fields` with those of `device` and sets updated_at.
  virtual absl::StatusOr<v1::Device> UpdateDevice(std::string_view tenant, const v1::Device& device,
                                                  const DeviceUpdate& fields) = 0;
  // Deletes the device, its telemetry and its latest values.
  virtual absl::Status DeleteDevice(std::string_view tenant, std::string_view device_id) = 0;
};

// ---------------------------------------------------------------------------------------
// Edges

struct EdgeSession {
  std::uint64_t high_water_mark = 0;
  // Raised by every TouchEdge (the first session is 1; 0 is an edge that never said Hello);
  // a write with another epoch is refused (ABORTED).
  std::uint64_t epoch = 0;
  // The highest alarm seq of the edge's rules the cloud applied (ApplyEdgeAlarms).
  std::uint64_t alarm_mark = 0;
};

struct ConfigState {
  std::uint64_t desired = 0;
  std::uint64_t applied = 0;
};

class EdgeStore {
 public:
  virtual ~EdgeStore() = default;
  virtual absl::StatusOr<v1::Edge> CreateEdge(std::string_view tenant, const v1::Edge& edge) = 0;
  virtual absl::StatusOr<v1::Edge> GetEdge(std::string_view tenant, std::string_view edge_id) = 0;
  // Ordered by edge_id, up to page_size + 1 rows after `after_edge_id`.
  virtual absl::StatusOr<std::vector<v1::Edge>> ListEdges(std::string_view tenant, int page_size,
                                                          std::string_view after_edge_id) = 0;
  // Called when an edge says Hello: creates the edge if it is new (enrolment is automatic
  // until authentication lands), sets last_seen_at, starts a new session (the next epoch,
  // which fences off every older session of the edge) and returns its high-water mark.
  virtual absl::StatusOr<EdgeSession> TouchEdge(std::string_view tenant, std::string_view edge_id,
                                                std::int64_t now_ms) = 0;

  // Config revisions. Every device change that concerns an edge (a device assigned to it,
  // its type or attributes changed, moved away, deleted) raises the edge's config_revision in
  // the same transaction as the change, on both backends (a trigger in the schema).
  //
  // The edge's current configuration: its revision and its devices, read in one snapshot.
  // NOT_FOUND for an unknown edge.
  virtual absl::StatusOr<v1::EdgeConfig> GetEdgeConfig(std::string_view tenant, std::string_view edge_id) = 0;
  // The desired and the applied revision; NOT_FOUND for an unknown edge.
  virtual absl::StatusOr<ConfigState> GetConfigState(std::string_view tenant, std::string_view edge_id) = 0;
  // Records the edge's answer to a revision: applied (the applied revision moves forward to
  // it, never back and never past the desired one) or refused (its reason is kept).
  virtual absl::Status RecordConfigAck(std::string_view tenant, std::string_view edge_id, const v1::ConfigAck& ack,
                                       std::int64_t now_ms) = 0;

  // Connection state. An edge's heartbeat of session `epoch`: raises last_seen_at to now_ms
  // and records its lag (nothing for an older session's).
  virtual absl::Status RecordHeartbeat(std::string_view tenant, std::string_view edge_id, std::uint64_t epoch,
                                       std::int64_t now_ms, const v1::Heartbeat& heartbeat) = 0;
  // Session `epoch` ended: the edge is shown disconnected unless a newer session started.
  virtual absl::Status EndSession(std::string_view tenant, std::string_view edge_id, std::uint64_t epoch) = 0;
};

// ---------------------------------------------------------------------------------------
// Telemetry

// One value to store. The device must exist (the Telemetry service checks).
struct Point {
  std::string key;
  std::int64_t ts = 0;
  v1::Value value;
};

struct TelemetryCursor {
  std::int64_t ts = 0;
  std::string key;
};

struct TelemetryQuery {
  std::string device_id;
  std::vector<std::string> keys;  // empty: every key
  std::int64_t start = 0;         // inclusive
  std::int64_t end = 0;           // exclusive; 0: no upper bound
  int limit = 1000;               // the backend returns up to limit + 1 readings
  bool descending = false;
  // Resume strictly after (ascending) or before (descending) this (ts, key).
  std::optional<TelemetryCursor> after;
};

struct AggregateQuery {
  std::string device_id;
  std::vector<std::string> keys;  // at least one
  std::int64_t start = 0;         // inclusive
  std::int64_t end = 0;           // exclusive, > start
  std::int64_t interval = 0;      // > 0
  v1::AggregationFunction function = v1::AGGREGATION_FUNCTION_AVG;
};

struct EdgeBatchResult {
  std::uint64_t high_water_mark = 0;
  std::uint32_t written = 0;  // readings stored; 0 when the whole batch was at or below the mark
};

struct RetentionResult {
  std::uint64_t partitions_dropped = 0;  // PostgreSQL
  std::uint64_t rows_deleted = 0;        // SQLite
};

class TelemetryStore {
 public:
  virtual ~TelemetryStore() = default;

  // Upserts the points (one value per device, key, ts: the last write wins), updates the
  // latest values (a point replaces a latest value only if its ts is not older) and the
  // device's last_seen_at, in one transaction. NOT_FOUND if the device does not exist.
  virtual absl::Status Write(std::string_view tenant, std::string_view device_id,
                             const std::vector<Point>& points) = 0;

  // Readings ordered by (ts, key), ascending or descending; up to limit + 1 of them.
  virtual absl::StatusOr<std::vector<v1::Reading>> Query(std::string_view tenant, const TelemetryQuery& query) = 0;

  // The newest reading of each key of the device (of `keys` if not empty), ordered by key.
  virtual absl::StatusOr<std::vector<v1::Reading>> Latest(std::string_view tenant, std::string_view device_id,
                                                          const std::vector<std::string>& keys) = 0;

  // One series per requested key (in request order), each with the non-empty buckets in time
  // order. Integer and double values are folded together; bool and string values are
  // ignored. One SQL statement, whatever the number of buckets.
  virtual absl::StatusOr<std::vector<v1::AggregateSeries>> Aggregate(std::string_view tenant,
                                                                     const AggregateQuery& query) = 0;

  // The edge hub's write: consecutive batches of one edge in one transaction. Reads the
  // edge's high-water mark (creating the edge if needed); for each batch in order, upserts
  // the readings whose seq is above the mark so far (creating unknown devices with edge_id
  // set, and updating latest values and last_seen_at as Write does) and raises the mark to
  // max(mark, batch.last_seq). A batch wholly at or below the mark writes nothing. One
  // result per batch, in order; on error nothing is written.
  //
  // Fencing: `session_epoch` is the epoch TouchEdge gave the writing session (0 for an edge
  // that never said Hello). If the edge's epoch is another one, a newer session started and
  // the write is refused with ABORTED: the check and the write share the transaction, so an
  // old session can never write or advance the mark after a newer one began.
  virtual absl::StatusOr<std::vector<EdgeBatchResult>> ApplyEdgeBatches(
      std::string_view tenant, std::string_view edge_id, std::span<const v1::TelemetryBatch* const> batches,
      std::int64_t now_ms, std::uint64_t session_epoch) = 0;

  // Retention: deletes telemetry older than `cutoff_ms` (latest values stay). PostgreSQL
  // drops whole day partitions (those that end before the cutoff), SQLite deletes rows.
  virtual absl::StatusOr<RetentionResult> DropTelemetryBefore(std::int64_t cutoff_ms) = 0;

  // ApplyEdgeBatches() for one batch.
  absl::StatusOr<EdgeBatchResult> ApplyEdgeBatch(std::string_view tenant, std::string_view edge_id,
                                                 const v1::TelemetryBatch& batch, std::int64_t now_ms,
                                                 std::uint64_t session_epoch = 0) {
    const v1::TelemetryBatch* one[] = {&batch};
    auto results = ApplyEdgeBatches(tenant, edge_id, one, now_ms, session_epoch);
    if (!results.ok()) return results.status();
    return results->front();
  }
};

// ---------------------------------------------------------------------------------------
// Commands (written once for both backends: commands.cpp, on storage/sql_tx.h)

// Where a page of a device's commands (newest first) ended.
struct CommandCursor {
  std::int64_t created_at = 0;
  std::string command_id;
};

struct CommandListQuery {
  std::string device_id;
  v1::CommandState state = v1::COMMAND_STATE_UNSPECIFIED;  // UNSPECIFIED: every state
  int page_size = 100;
  std::optional<CommandCursor> before;  // resume strictly after this one (in list order)
};

struct CreatedCommand {
  v1::Command command;
  bool created = true;  // false: the idempotency key had made it before
};

// What a session of the edge sends it: QUEUED, unexpired commands of its own, and commands
// cancelled in the cloud that the edge may hold.
struct CommandDispatch {
  std::vector<v1::CommandRequest> commands;
  std::vector<std::string> cancels;
};

enum class UpdateOutcome {
  kRecorded,   // a new transition (the state moved, or it went into the history only)
  kDuplicate,  // this transition was recorded before
  kUnknown,    // no such command of this edge (or a state an edge cannot report)
};

class CommandStore {
 public:
  virtual ~CommandStore() = default;
  // Queues `command` (command_id, device_id, name, params, timeout_ms, expires_at and
  // idempotency_key set by the caller) for the edge that serves the device: QUEUED, with its
  // first transition. NOT_FOUND for an unknown device, FAILED_PRECONDITION for a device that
  // no edge serves. A key the device used before returns that command (created = false).
  virtual absl::StatusOr<CreatedCommand> CreateCommand(std::string_view tenant, const v1::Command& command) = 0;
  // With its history. NOT_FOUND for an unknown id.
  virtual absl::StatusOr<v1::Command> GetCommand(std::string_view tenant, std::string_view command_id) = 0;
  // Newest first (created_at, then command_id, descending), without history; up to
  // page_size + 1 of them.
  virtual absl::StatusOr<std::vector<v1::Command>> ListCommands(std::string_view tenant,
                                                                const CommandListQuery& query) = 0;
  // CANCELLED now, and the edge is told (cancel_pending) until it answers. NOT_FOUND for an
  // unknown id, FAILED_PRECONDITION for a command in a final state.
  virtual absl::StatusOr<v1::Command> CancelCommand(std::string_view tenant, std::string_view command_id) = 0;

  // The edge hub: up to `limit` commands for the edge (oldest first) and up to `limit`
  // cancellations to pass on.
  virtual absl::StatusOr<CommandDispatch> PendingForEdge(std::string_view tenant, std::string_view edge_id,
                                                         std::int64_t now_ms, int limit) = 0;
  // Records the edge's transitions in one transaction, one outcome per update in order: a
  // transition is recorded once per (command, state); the state moves only forward and not
  // out of a final state (a later report goes into the history only); a final state ends
  // cancel_pending. Updates for commands of other edges change nothing.
  virtual absl::StatusOr<std::vector<UpdateOutcome>> ApplyCommandUpdates(
      std::string_view tenant, std::string_view edge_id, std::span<const v1::CommandUpdate* const> updates) = 0;
  // Every tenant's QUEUED commands whose expires_at has passed and that no edge was handed
  // (PendingForEdge) become EXPIRED, and those an edge was handed once dispatched_grace_ms
  // has passed as well (the edge enforces expires_at itself and says how the command ended;
  // the grace is for an edge that never comes back). At most `limit` a call; returns how many.
  virtual absl::StatusOr<std::int64_t> ExpireCommands(std::int64_t now_ms, std::int64_t dispatched_grace_ms,
                                                      int limit) = 0;
};

// ---------------------------------------------------------------------------------------

// The largest desired or reported document, as JSON text.
inline constexpr std::size_t kMaxTwinDocumentBytes = 64 * 1024;
// The most bytes of desired documents of the devices of one edge (they travel in its config
// revision, which may not exceed 16 MiB).
inline constexpr std::size_t kMaxEdgeDesiredBytes = 4 * 1024 * 1024;

enum class ReportedOutcome {
  kStored,     // the device's reported document is this one now
  kStale,      // the cloud has this seq (or a higher one) from this edge already
  kUnknown,    // the device is behind another edge
};

class TwinStore {
 public:
  virtual ~TwinStore() = default;
  // NOT_FOUND for an unknown device.
  virtual absl::StatusOr<v1::DeviceTwin> GetTwin(std::string_view tenant, std::string_view device_id) = 0;
  // Applies `merge_patch` (RFC 7396; a JSON object) to the desired document and raises its
  // version (and so the revision of the device's edge), in one transaction. NOT_FOUND for an
  // unknown device; ABORTED when expected_version is set and differs; INVALID_ARGUMENT when
  // the result would be larger than kMaxTwinDocumentBytes; FAILED_PRECONDITION when the
  // desired documents of the device's edge would total more than kMaxEdgeDesiredBytes.
  virtual absl::StatusOr<v1::DeviceTwin> UpdateDesired(std::string_view tenant, std::string_view device_id,
                                                       const nlohmann::json& merge_patch,
                                                       std::optional<std::int64_t> expected_version) = 0;
  // The edge's report of a device's reported document (checked JSON object text): stored when
  // the device is the edge's and seq is above the last one stored from that edge. A device
  // the cloud does not know is registered for the edge, one no edge serves becomes the
  // edge's (as with its telemetry); `at` ahead of the cloud's clock by more than 5 minutes is
  // taken as now.
  virtual absl::StatusOr<ReportedOutcome> ApplyReported(std::string_view tenant, std::string_view edge_id,
                                                        const v1::TwinReported& reported) = 0;
};

class EdgeSettingsStore {
 public:
  virtual ~EdgeSettingsStore() = default;
  // Replaces the edge's managed settings (checked by the caller) and raises its config
  // revision, in one transaction. NOT_FOUND for an unknown edge.
  virtual absl::Status SetEdgeSettings(std::string_view tenant, std::string_view edge_id,
                                       const v1::EdgeSettings& settings) = 0;
};

// ---------------------------------------------------------------------------------------
// Rules and alarms (written once for both backends: rules_alarms.cpp, on storage/sql_tx.h)

class RuleStore {
 public:
  virtual ~RuleStore() = default;
  // Stores `rule` (checked by the caller) with created_at = updated_at = now. ALREADY_EXISTS
  // for a rule_id the tenant has.
  virtual absl::StatusOr<v1::Rule> CreateRule(std::string_view tenant, const v1::Rule& rule) = 0;
  virtual absl::StatusOr<v1::Rule> GetRule(std::string_view tenant, std::string_view rule_id) = 0;
  // Ordered by rule_id, up to page_size + 1 rules after `after_rule_id`.
  virtual absl::StatusOr<std::vector<v1::Rule>> ListRules(std::string_view tenant, int page_size,
                                                          std::string_view after_rule_id) = 0;
  // Replaces the stored rule of rule.rule_id() (created_at kept, updated_at = now). NOT_FOUND.
  // When what it evaluates changed, or it was disabled, its state is dropped and its active
  // alarms are cleared (source "rule:<id> changed"), in the same transaction; a change of
  // name or description alone keeps both. DeleteRule does the same.
  virtual absl::StatusOr<v1::Rule> ReplaceRule(std::string_view tenant, const v1::Rule& rule) = 0;
  virtual absl::Status DeleteRule(std::string_view tenant, std::string_view rule_id) = 0;
};

struct AlarmRaise {
  std::string device_id;
  std::string type;
  v1::AlarmSeverity severity = v1::ALARM_SEVERITY_MAJOR;
  std::string rule_id;
  std::int64_t ts = 0;           // when it happened (the alarm's start_ts when it is new)
  std::string source;            // "rule:<id>", "edge:<id>", "api"
  google::protobuf::Struct values;
};

struct AlarmRaiseResult {
  v1::Alarm alarm;
  bool created = false;           // a new active alarm; otherwise an occurrence of the active one
  bool severity_changed = false;  // the occurrence escalated or de-escalated it
};

struct AlarmCursor {
  std::int64_t start_ts = 0;
  std::string alarm_id;
};

struct AlarmListQuery {
  std::string device_id;  // empty: any
  std::string type;       // empty: any
  v1::AlarmSeverity severity = v1::ALARM_SEVERITY_UNSPECIFIED;
  v1::AlarmStatus status = v1::ALARM_STATUS_UNSPECIFIED;
  std::int64_t start = 0;  // start_ts >= start
  std::int64_t end = 0;    // start_ts < end; 0: no bound
  int page_size = 100;
  std::optional<AlarmCursor> before;  // resume strictly after this one (newest first)
};

// What a cloud rule decided in one round: an alarm to raise (or raise again), or the active
// alarm of (raise.device_id, raise.type) to clear at raise.ts.
struct AlarmChange {
  AlarmRaise raise;
  bool clear = false;
};

struct RuleStateWrite {
  std::string rule_id;
  std::string state;  // strata::rules::RuleState::Serialize()
  // The rule's updated_at the state is of: not written if the rule changed or went since.
  std::int64_t rule_updated_at = 0;
};

class AlarmStore {
 public:
  virtual ~AlarmStore() = default;
  // The active alarm of (device, type) if there is one, else a new one (ACTIVE_UNACK), in one
  // statement on the database's unique index of active alarms: concurrent raises give one
  // alarm. An occurrence of the active alarm takes the raise's severity and values; a changed
  // severity is an event (SEVERITY_CHANGED), a new alarm one too (RAISED).
  virtual absl::StatusOr<AlarmRaiseResult> RaiseAlarm(std::string_view tenant, const AlarmRaise& raise) = 0;
  // Clears the active alarm of (device, type) at `ts`; NOT_FOUND when none is active.
  virtual absl::StatusOr<v1::Alarm> ClearActiveAlarm(std::string_view tenant, std::string_view device_id,
                                                     std::string_view type, std::int64_t ts,
                                                     std::string_view source) = 0;
  // With its history. NOT_FOUND for an unknown id.
  virtual absl::StatusOr<v1::Alarm> GetAlarm(std::string_view tenant, std::string_view alarm_id) = 0;
  // Newest first (start_ts, then alarm_id, descending), without history; up to page_size + 1.
  virtual absl::StatusOr<std::vector<v1::Alarm>> ListAlarms(std::string_view tenant, const AlarmListQuery& query) = 0;
  // ACTIVE_UNACK -> ACTIVE_ACK, CLEARED_UNACK -> CLEARED_ACK at `ts`; an acknowledged alarm
  // is returned as it is. NOT_FOUND for an unknown id.
  virtual absl::StatusOr<v1::Alarm> AckAlarm(std::string_view tenant, std::string_view alarm_id, std::int64_t ts,
                                             std::string_view source) = 0;
  // ACTIVE_* -> CLEARED_* at `ts`; a cleared alarm is returned as it is. NOT_FOUND.
  virtual absl::StatusOr<v1::Alarm> ClearAlarm(std::string_view tenant, std::string_view alarm_id, std::int64_t ts,
                                               std::string_view source) = 0;

  // The cloud rules' round: the alarm changes in order (a clear with no active alarm changes
  // nothing) and the rules' new states, in one transaction: after a crash the states and the
  // alarms agree.
  virtual absl::Status ApplyRuleResults(std::string_view tenant, std::span<const AlarmChange> changes,
                                        std::span<const RuleStateWrite> states) = 0;
  // An edge's rules' alarm changes, each with the seq the edge gave it (no change: a seq the
  // caller refused, passed over): those above the edge's alarm mark are applied in order and
  // the mark moves to the last, in one transaction (the edge's row is locked first, so two
  // sessions of one edge apply each seq once). Returns the mark before and after. NOT_FOUND
  // for an unknown edge.
  using EdgeAlarmChange = std::pair<std::uint64_t, std::optional<AlarmChange>>;
  struct EdgeAlarmMarks {
    std::uint64_t before = 0;
    std::uint64_t after = 0;
  };
  virtual absl::StatusOr<EdgeAlarmMarks> ApplyEdgeAlarms(std::string_view tenant, std::string_view edge_id,
                                                         std::span<const EdgeAlarmChange> changes) = 0;
  // A rule's saved state; empty when it has none (new, changed or never saved).
  virtual absl::StatusOr<std::string> LoadRuleState(std::string_view tenant, std::string_view rule_id) = 0;
};

// ---------------------------------------------------------------------------------------

class Database {
 public:
  virtual ~Database() = default;
  virtual DeviceStore& Devices() = 0;
  virtual EdgeStore& Edges() = 0;
  virtual TelemetryStore& Telemetry() = 0;
  virtual CommandStore& Commands() = 0;
  virtual TwinStore& Twins() = 0;
  virtual EdgeSettingsStore& Settings() = 0;
  virtual RuleStore& Rules() = 0;
  virtual AlarmStore& Alarms() = 0;
  // OK when the database answers a trivial query (readiness).
  virtual absl::Status Ping() = 0;
  // "sqlite" or "postgresql".
  virtual std::string_view Backend() const = 0;
};

struct DatabaseOptions {
  // sqlite://PATH (relative paths are taken as they are) or postgresql://... / postgres://...
  std::string url;
  // Size of the PostgreSQL connection pool.
  int pool_size = 8;
  // The time the stores write into created_at / updated_at and migration records, and by
  // which PostgreSQL picks the days to make partitions for.
  Clock clock = NowMs;
};

// Opens the database, applies pending migrations, and returns it. INVALID_ARGUMENT for an
// unknown URL scheme, UNAVAILABLE if the database cannot be reached.
absl::StatusOr<std::unique_ptr<Database>> OpenDatabase(const DatabaseOptions& options);

}  // namespace strata::storage
