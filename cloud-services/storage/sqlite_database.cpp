// The SQLite backend: the embedded default for the quickstart and small sites.
//
// One connection in WAL mode with a busy timeout, guarded by one mutex (mu_): SQLite runs one
// writer at a time anyway, and a single connection keeps transactions simple. Writes use
// BEGIN IMMEDIATE so a second process on the same file waits (busy timeout) instead of
// failing half-way through a transaction.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <span>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

#include "backends.h"
#include "codec.h"
#include "rows.h"
#include "migrations.h"
#include "strata/clock.h"
#include "strata/sqlite/migrations.h"
#include "strata/sqlite/sqlite.h"
#include "strata/status_macros.h"

namespace strata::storage {
namespace {

// Debian's abseil has its own string_view type: hand it std::strings.
std::string Str(std::string_view s) { return std::string(s); }

// An error of the SQLite layer (it carries SQLite's code) in the API's words, the detail in
// the log; the backend's own errors (NotFound, ...) pass through.
absl::Status InApiWords(absl::Status s) {
  if (s.ok() || !sqlite::SqliteCode(s)) return s;
  const std::string detail(s.message());
  switch (s.code()) {
    case absl::StatusCode::kAlreadyExists: return ConflictError("SQLite", detail);
    case absl::StatusCode::kUnavailable: return UnavailableDbError("SQLite", detail);
    default: return InternalDbError("SQLite", detail);
  }
}

// The four value columns (double, int, bool, string) of telemetry rows, starting at `first`.
sqlite::Statement& BindValue(sqlite::Statement& s, int first, const v1::Value& v) {
  for (int k = 0; k < 4; ++k) s.BindNull(first + k);
  switch (v.kind_case()) {
    case v1::Value::kDoubleValue: return s.Bind(first, v.double_value());
    case v1::Value::kIntValue: return s.Bind(first + 1, static_cast<std::int64_t>(v.int_value()));
    case v1::Value::kBoolValue: return s.Bind(first + 2, v.bool_value());
    case v1::Value::kStringValue: return s.Bind(first + 3, std::string_view(v.string_value()));
    case v1::Value::KIND_NOT_SET: break;
  }
  return s;  // unreachable after ValidatePoints() / ValidateBatch(); the CHECK constraint would refuse it
}

// A SQLite row as storage/rows.h reads it.
struct SqliteRow {
  const sqlite::Statement& s;
  bool IsNull(int i) const { return s.IsNull(i); }
  std::string Text(int i) const { return s.Text(i); }
  std::int64_t Int(int i) const { return s.Int(i); }
  double Double(int i) const { return s.Double(i); }
  bool Bool(int i) const { return s.Int(i) != 0; }
};

// ---- SQL -------------------------------------------------------------------------------

constexpr std::string_view kInsertDevice =
    "INSERT INTO devices (tenant_id, device_id, name, type, labels, attributes, edge_id,"
    " created_at, updated_at, last_seen_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 0)";
constexpr std::string_view kSelectDevice =
    "SELECT device_id, name, type, labels, attributes, edge_id, created_at, updated_at, last_seen_at"
    " FROM devices WHERE tenant_id = ?1 AND device_id = ?2";
// ?3: JSON object of labels that must all be present, or NULL for no filter.
constexpr std::string_view kListDevices =
    "SELECT device_id, name, type, labels, attributes, edge_id, created_at, updated_at, last_seen_at"
    " FROM devices WHERE tenant_id = ?1 AND device_id > ?2"
    " AND (?3 IS NULL OR NOT EXISTS (SELECT 1 FROM json_each(?3) AS f WHERE NOT EXISTS"
    "   (SELECT 1 FROM json_each(devices.labels) AS l WHERE l.key = f.key AND l.value = f.value)))"
    " ORDER BY device_id LIMIT ?4";
constexpr std::string_view kUpdateDevice =
    "UPDATE devices SET"
    " name = CASE WHEN ?3 THEN ?4 ELSE name END,"
    " type = CASE WHEN ?5 THEN ?6 ELSE type END,"
    " labels = CASE WHEN ?7 THEN ?8 ELSE labels END,"
    " attributes = CASE WHEN ?9 THEN ?10 ELSE attributes END,"
    " updated_at = ?11"
    " WHERE tenant_id = ?1 AND device_id = ?2"
    " RETURNING device_id, name, type, labels, attributes, edge_id, created_at, updated_at, last_seen_at";
constexpr std::string_view kDeleteDevice = "DELETE FROM devices WHERE tenant_id = ?1 AND device_id = ?2";
constexpr std::string_view kDeleteDeviceTelemetry =
    "DELETE FROM telemetry WHERE tenant_id = ?1 AND device_id = ?2";
constexpr std::string_view kDeleteDeviceLatest =
    "DELETE FROM telemetry_latest WHERE tenant_id = ?1 AND device_id = ?2";
constexpr std::string_view kTouchDevice =
    "UPDATE devices SET last_seen_at = max(last_seen_at, ?3) WHERE tenant_id = ?1 AND device_id = ?2";
constexpr std::string_view kTouchDeviceFromEdge =
    "UPDATE devices SET last_seen_at = max(last_seen_at, ?3), edge_id = ?4"
    " WHERE tenant_id = ?1 AND device_id = ?2";
constexpr std::string_view kAutoCreateDevice =
    "INSERT INTO devices (tenant_id, device_id, name, edge_id, created_at, updated_at)"
    " VALUES (?1, ?2, ?2, ?3, ?4, ?4) ON CONFLICT (tenant_id, device_id) DO NOTHING";

constexpr std::string_view kInsertEdge =
    "INSERT INTO edges (tenant_id, edge_id, name, labels, created_at, updated_at, last_seen_at,"
    " high_water_mark) VALUES (?1, ?2, ?3, ?4, ?5, ?5, 0, 0)";
constexpr std::string_view kSelectEdge =
    "SELECT edge_id, name, labels, created_at, updated_at, last_seen_at, high_water_mark"
    " FROM edges WHERE tenant_id = ?1 AND edge_id = ?2";
constexpr std::string_view kListEdges =
    "SELECT edge_id, name, labels, created_at, updated_at, last_seen_at, high_water_mark"
    " FROM edges WHERE tenant_id = ?1 AND edge_id > ?2 ORDER BY edge_id LIMIT ?3";
constexpr std::string_view kTouchEdge =
    "INSERT INTO edges (tenant_id, edge_id, name, created_at, updated_at, last_seen_at, session_epoch)"
    " VALUES (?1, ?2, ?2, ?3, ?3, ?3, 1)"
    " ON CONFLICT (tenant_id, edge_id) DO UPDATE SET last_seen_at = excluded.last_seen_at,"
    " session_epoch = edges.session_epoch + 1"
    " RETURNING high_water_mark, session_epoch";
constexpr std::string_view kEnsureEdge =
    "INSERT INTO edges (tenant_id, edge_id, name, created_at, updated_at)"
    " VALUES (?1, ?2, ?2, ?3, ?3) ON CONFLICT (tenant_id, edge_id) DO NOTHING";
constexpr std::string_view kSelectHighWaterMark =
    "SELECT high_water_mark, session_epoch FROM edges WHERE tenant_id = ?1 AND edge_id = ?2";
constexpr std::string_view kAdvanceEdge =
    "UPDATE edges SET high_water_mark = max(high_water_mark, ?3), last_seen_at = ?4"
    " WHERE tenant_id = ?1 AND edge_id = ?2 RETURNING high_water_mark";

// Retention: the oldest rows first, kRetentionChunk at a time.
constexpr std::uint64_t kRetentionChunk = 10000;
constexpr std::string_view kDeleteTelemetryBefore =
    "DELETE FROM telemetry WHERE (tenant_id, device_id, key, ts) IN"
    " (SELECT tenant_id, device_id, key, ts FROM telemetry WHERE ts < ?1 LIMIT 10000)";

constexpr std::string_view kUpsertTelemetry =
    "INSERT INTO telemetry (tenant_id, device_id, key, ts, v_double, v_int, v_bool, v_string)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    " ON CONFLICT (tenant_id, device_id, key, ts) DO UPDATE SET"
    " v_double = excluded.v_double, v_int = excluded.v_int, v_bool = excluded.v_bool,"
    " v_string = excluded.v_string";
// A point replaces the latest value unless it is older; of equal times the later write wins.
constexpr std::string_view kUpsertLatest =
    "INSERT INTO telemetry_latest (tenant_id, device_id, key, ts, v_double, v_int, v_bool, v_string)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    " ON CONFLICT (tenant_id, device_id, key) DO UPDATE SET"
    " ts = excluded.ts, v_double = excluded.v_double, v_int = excluded.v_int,"
    " v_bool = excluded.v_bool, v_string = excluded.v_string"
    " WHERE excluded.ts >= telemetry_latest.ts";
// ?5: JSON array of keys or NULL for all; ?6, ?7: the cursor (ts, key) or NULL.
constexpr std::string_view kQueryAsc =
    "SELECT key, ts, v_double, v_int, v_bool, v_string FROM telemetry"
    " WHERE tenant_id = ?1 AND device_id = ?2 AND ts >= ?3 AND ts < ?4"
    " AND (?5 IS NULL OR key IN (SELECT value FROM json_each(?5)))"
    " AND (?6 IS NULL OR (ts, key) > (?6, ?7))"
    " ORDER BY ts, key LIMIT ?8";
constexpr std::string_view kQueryDesc =
    "SELECT key, ts, v_double, v_int, v_bool, v_string FROM telemetry"
    " WHERE tenant_id = ?1 AND device_id = ?2 AND ts >= ?3 AND ts < ?4"
    " AND (?5 IS NULL OR key IN (SELECT value FROM json_each(?5)))"
    " AND (?6 IS NULL OR (ts, key) < (?6, ?7))"
    " ORDER BY ts DESC, key DESC LIMIT ?8";
constexpr std::string_view kLatest =
    "SELECT key, ts, v_double, v_int, v_bool, v_string FROM telemetry_latest"
    " WHERE tenant_id = ?1 AND device_id = ?2"
    " AND (?3 IS NULL OR key IN (SELECT value FROM json_each(?3)))"
    " ORDER BY key";
// Every bucket of every key in one statement. ts >= ?3, so integer division floors.
// Integers and doubles fold together as REAL; bool and string rows have neither and drop out.
constexpr std::string_view kAggregate =
    "SELECT key, ?3 + ((ts - ?3) / ?5) * ?5 AS bucket, avg(v), min(v), max(v), total(v), count(v)"
    " FROM (SELECT key, ts, coalesce(v_double, CAST(v_int AS REAL)) AS v FROM telemetry"
    "       WHERE tenant_id = ?1 AND device_id = ?2 AND ts >= ?3 AND ts < ?4"
    "       AND key IN (SELECT value FROM json_each(?6)))"
    " WHERE v IS NOT NULL GROUP BY key, bucket ORDER BY key, bucket";
constexpr std::string_view kPing = "SELECT 1";

std::optional<std::string> KeysParam(const std::vector<std::string>& keys) {
  if (keys.empty()) return std::nullopt;
  return EncodeJsonArray(keys);
}

class SqliteDatabase final : public Database, public DeviceStore, public EdgeStore, public TelemetryStore {
 public:
  SqliteDatabase(std::unique_ptr<sqlite::Connection> db, Clock clock) : db_(std::move(db)), clock_(std::move(clock)) {}

  static absl::StatusOr<std::unique_ptr<Database>> Open(const std::string& path, Clock clock) {
    // In WAL mode synchronous=NORMAL loses no committed data on a process crash, only on power loss.
    auto conn = sqlite::Connection::Open({.path = path});
    if (!conn.ok()) {
      return absl::UnavailableError(absl::StrCat("cannot open SQLite database: ", conn.status().message()));
    }
    if (auto s = sqlite::Migrate(**conn, SqliteMigrations(), clock(), "SQLite"); !s.ok()) return s;
    return std::unique_ptr<Database>(std::make_unique<SqliteDatabase>(*std::move(conn), std::move(clock)));
  }

  DeviceStore& Devices() override { return *this; }
  EdgeStore& Edges() override { return *this; }
  TelemetryStore& Telemetry() override { return *this; }
  std::string_view Backend() const override { return "sqlite"; }

  absl::Status Ping() override {
    return Run([&]() -> absl::Status {
      STRATA_ASSIGN_OR_RETURN(auto s, db_->Prepare(kPing));
      return s.Run();
    });
  }

  // ---- devices ----

  absl::StatusOr<v1::Device> CreateDevice(std::string_view tenant, const v1::Device& device) override {
    if (device.device_id().empty()) return absl::InvalidArgumentError("empty device_id");
    return NameConflict<v1::Device>(Run([&]() -> absl::StatusOr<v1::Device> {
      const std::int64_t now = clock_();
      STRATA_ASSIGN_OR_RETURN(auto s, db_->Prepare(kInsertDevice));
      STRATA_RETURN_IF_ERROR(s.Bind(1, tenant).Bind(2, device.device_id()).Bind(3, device.name())
                                 .Bind(4, device.type()).Bind(5, EncodeStringMap(device.labels()))
                                 .Bind(6, EncodeStringMap(device.attributes())).Bind(7, device.edge_id())
                                 .Bind(8, now).Run());
      return CreatedDevice(device, tenant, now);
    }), "device '" + device.device_id() + "'");
  }

  absl::StatusOr<v1::Device> GetDevice(std::string_view tenant, std::string_view device_id) override {
    return Run([&]() -> absl::StatusOr<v1::Device> {
      STRATA_ASSIGN_OR_RETURN(auto s, db_->Prepare(kSelectDevice));
      STRATA_ASSIGN_OR_RETURN(bool found, s.Bind(1, tenant).Bind(2, device_id).Step());
      if (!found) return NotFound("device", Str(device_id));
      return DeviceFromRow(SqliteRow{s}, tenant);
    });
  }

  absl::StatusOr<std::vector<v1::Device>> ListDevices(std::string_view tenant,
                                                      const DeviceListQuery& query) override {
    std::optional<std::string> filter;
    if (!query.labels.empty()) {
      filter = LabelFilterJson(query.labels);
      if (!filter) return std::vector<v1::Device>{};
    }
    return Run([&]() -> absl::StatusOr<std::vector<v1::Device>> {
      STRATA_ASSIGN_OR_RETURN(auto s, db_->Prepare(kListDevices));
      s.Bind(1, tenant).Bind(2, query.after_device_id).Bind(3, filter).Bind(4, PageLimit(query.page_size));
      std::vector<v1::Device> out;
      STRATA_RETURN_IF_ERROR(s.ForEachRow([&]() -> absl::Status {
        STRATA_ASSIGN_OR_RETURN(auto d, DeviceFromRow(SqliteRow{s}, tenant));
        out.push_back(std::move(d));
        return absl::OkStatus();
      }));
      return out;
    });
  }

  absl::StatusOr<v1::Device> UpdateDevice(std::string_view tenant, const v1::Device& device,
                                          const DeviceUpdate& fields) override {
    return Run([&]() -> absl::StatusOr<v1::Device> {
      STRATA_ASSIGN_OR_RETURN(auto s, db_->Prepare(kUpdateDevice));
      s.Bind(1, tenant).Bind(2, device.device_id())
          .Bind(3, fields.name).Bind(4, device.name())
          .Bind(5, fields.type).Bind(6, device.type())
          .Bind(7, fields.labels).Bind(8, EncodeStringMap(device.labels()))
          .Bind(9, fields.attributes).Bind(10, EncodeStringMap(device.attributes()))
          .Bind(11, clock_());
      STRATA_ASSIGN_OR_RETURN(bool found, s.Step());
      if (!found) return NotFound("device", device.device_id());
      auto out = DeviceFromRow(SqliteRow{s}, tenant);
      STRATA_RETURN_IF_ERROR(s.Run());
      return out;
    });
  }

  absl::Status DeleteDevice(std::string_view tenant, std::string_view device_id) override {
    return Run([&]() -> absl::Status {
      STRATA_ASSIGN_OR_RETURN(auto tx, sqlite::Transaction::Begin(*db_));
      STRATA_RETURN_IF_ERROR(Exec(kDeleteDevice, tenant, device_id));
      if (db_->Changes() == 0) return NotFound("device", Str(device_id));
      STRATA_RETURN_IF_ERROR(Exec(kDeleteDeviceTelemetry, tenant, device_id));
      STRATA_RETURN_IF_ERROR(Exec(kDeleteDeviceLatest, tenant, device_id));
      return tx.Commit();
    });
  }

  // ---- edges ----

  absl::StatusOr<v1::Edge> CreateEdge(std::string_view tenant, const v1::Edge& edge) override {
    if (edge.edge_id().empty()) return absl::InvalidArgumentError("empty edge_id");
    return NameConflict<v1::Edge>(Run([&]() -> absl::StatusOr<v1::Edge> {
      const std::int64_t now = clock_();
      STRATA_RETURN_IF_ERROR(Exec(kInsertEdge, tenant, edge.edge_id(), edge.name(), EncodeStringMap(edge.labels()), now));
      return CreatedEdge(edge, tenant, now);
    }), "edge '" + edge.edge_id() + "'");
  }

  absl::StatusOr<v1::Edge> GetEdge(std::string_view tenant, std::string_view edge_id) override {
    return Run([&]() -> absl::StatusOr<v1::Edge> {
      STRATA_ASSIGN_OR_RETURN(auto s, db_->Prepare(kSelectEdge));
      STRATA_ASSIGN_OR_RETURN(bool found, s.Bind(1, tenant).Bind(2, edge_id).Step());
      if (!found) return NotFound("edge", Str(edge_id));
      return EdgeFromRow(SqliteRow{s}, tenant);
    });
  }

  absl::StatusOr<std::vector<v1::Edge>> ListEdges(std::string_view tenant, int page_size,
                                                  std::string_view after_edge_id) override {
    return Run([&]() -> absl::StatusOr<std::vector<v1::Edge>> {
      STRATA_ASSIGN_OR_RETURN(auto s, db_->Prepare(kListEdges));
      s.Bind(1, tenant).Bind(2, after_edge_id).Bind(3, PageLimit(page_size));
      std::vector<v1::Edge> out;
      STRATA_RETURN_IF_ERROR(s.ForEachRow([&]() -> absl::Status {
        STRATA_ASSIGN_OR_RETURN(auto e, EdgeFromRow(SqliteRow{s}, tenant));
        out.push_back(std::move(e));
        return absl::OkStatus();
      }));
      return out;
    });
  }

  absl::StatusOr<EdgeSession> TouchEdge(std::string_view tenant, std::string_view edge_id,
                                        std::int64_t now_ms) override {
    if (edge_id.empty()) return absl::InvalidArgumentError("empty edge_id");
    return Run([&]() -> absl::StatusOr<EdgeSession> {
      STRATA_ASSIGN_OR_RETURN(auto tx, sqlite::Transaction::Begin(*db_));
      STRATA_ASSIGN_OR_RETURN(auto s, db_->Prepare(kTouchEdge));
      STRATA_ASSIGN_OR_RETURN(bool row, s.Bind(1, tenant).Bind(2, edge_id).Bind(3, now_ms).Step());
      if (!row) return absl::InternalError("TouchEdge returned no row");
      EdgeSession session{static_cast<std::uint64_t>(s.Int(0)), static_cast<std::uint64_t>(s.Int(1))};
      STRATA_RETURN_IF_ERROR(s.Run());
      STRATA_RETURN_IF_ERROR(tx.Commit());
      return session;
    });
  }

  // ---- telemetry ----

  absl::Status Write(std::string_view tenant, std::string_view device_id, const std::vector<Point>& points) override {
    if (auto s = ValidatePoints(points); !s.ok()) return s;
    return Run([&]() -> absl::Status {
      STRATA_ASSIGN_OR_RETURN(auto tx, sqlite::Transaction::Begin(*db_));
      std::int64_t max_ts = std::numeric_limits<std::int64_t>::min();
      for (const auto& p : points) max_ts = std::max(max_ts, p.ts);
      STRATA_RETURN_IF_ERROR(Exec(kTouchDevice, tenant, device_id, points.empty() ? std::int64_t{0} : max_ts));
      if (db_->Changes() == 0) return NotFound("device", Str(device_id));
      STRATA_ASSIGN_OR_RETURN(auto upsert, db_->Prepare(kUpsertTelemetry));
      STRATA_ASSIGN_OR_RETURN(auto latest, db_->Prepare(kUpsertLatest));
      // In batch order, so a later point of the same (key, ts) wins.
      for (const auto& p : points) {
        STRATA_RETURN_IF_ERROR(UpsertPoint(upsert, latest, tenant, device_id, p.key, p.ts, p.value));
      }
      return tx.Commit();
    });
  }

  absl::StatusOr<std::vector<v1::Reading>> Query(std::string_view tenant, const TelemetryQuery& q) override {
    return Run([&]() -> absl::StatusOr<std::vector<v1::Reading>> {
      STRATA_ASSIGN_OR_RETURN(auto s, db_->Prepare(q.descending ? kQueryDesc : kQueryAsc));
      s.Bind(1, tenant).Bind(2, q.device_id).Bind(3, q.start)
          .Bind(4, q.end == 0 ? std::numeric_limits<std::int64_t>::max() : q.end)
          .Bind(5, KeysParam(q.keys));
      if (q.after) s.Bind(6, q.after->ts).Bind(7, q.after->key);
      s.Bind(8, static_cast<std::int64_t>(std::max(q.limit, 0)) + 1);
      std::vector<v1::Reading> out;
      STRATA_RETURN_IF_ERROR(s.ForEachRow([&] { out.push_back(ReadingFromRow(SqliteRow{s}, q.device_id)); }));
      return out;
    });
  }

  absl::StatusOr<std::vector<v1::Reading>> Latest(std::string_view tenant, std::string_view device_id,
                                                  const std::vector<std::string>& keys) override {
    return Run([&]() -> absl::StatusOr<std::vector<v1::Reading>> {
      STRATA_ASSIGN_OR_RETURN(auto s, db_->Prepare(kLatest));
      s.Bind(1, tenant).Bind(2, device_id).Bind(3, KeysParam(keys));
      std::vector<v1::Reading> out;
      STRATA_RETURN_IF_ERROR(s.ForEachRow([&] { out.push_back(ReadingFromRow(SqliteRow{s}, device_id)); }));
      return out;
    });
  }

  absl::StatusOr<std::vector<v1::AggregateSeries>> Aggregate(std::string_view tenant,
                                                             const AggregateQuery& q) override {
    if (q.keys.empty()) return absl::InvalidArgumentError("aggregate needs at least one key");
    if (q.interval <= 0) return absl::InvalidArgumentError("aggregate interval must be positive");
    if (q.end <= q.start) return absl::InvalidArgumentError("aggregate end must be after start");
    return Run([&]() -> absl::StatusOr<std::vector<v1::AggregateSeries>> {
      STRATA_ASSIGN_OR_RETURN(auto s, db_->Prepare(kAggregate));
      s.Bind(1, tenant).Bind(2, q.device_id).Bind(3, q.start).Bind(4, q.end).Bind(5, q.interval)
          .Bind(6, EncodeJsonArray(q.keys));
      std::map<std::string, std::vector<v1::Bucket>> by_key;
      STRATA_RETURN_IF_ERROR(s.ForEachRow([&] {
        v1::Bucket b;
        b.set_ts(s.Int(1));
        b.set_count(s.Int(6));
        switch (q.function) {
          case v1::AGGREGATION_FUNCTION_MIN: b.set_value(s.Double(3)); break;
          case v1::AGGREGATION_FUNCTION_MAX: b.set_value(s.Double(4)); break;
          case v1::AGGREGATION_FUNCTION_SUM: b.set_value(s.Double(5)); break;
          case v1::AGGREGATION_FUNCTION_COUNT: b.set_value(static_cast<double>(s.Int(6))); break;
          default: b.set_value(s.Double(2)); break;  // AVG, and UNSPECIFIED as AVG
        }
        by_key[s.Text(0)].push_back(std::move(b));
      }));
      return SeriesInKeyOrder(q.keys, by_key);
    });
  }

  absl::StatusOr<std::vector<EdgeBatchResult>> ApplyEdgeBatches(std::string_view tenant, std::string_view edge_id,
                                                                std::span<const v1::TelemetryBatch* const> batches,
                                                                std::int64_t now_ms,
                                                                std::uint64_t session_epoch) override {
    if (edge_id.empty()) return absl::InvalidArgumentError("empty edge_id");
    for (const auto* batch : batches) {
      if (auto s = ValidateBatch(*batch); !s.ok()) return s;
    }
    return Run([&]() -> absl::StatusOr<std::vector<EdgeBatchResult>> {
      // BEGIN IMMEDIATE: the mark cannot move under us.
      STRATA_ASSIGN_OR_RETURN(auto tx, sqlite::Transaction::Begin(*db_));
      STRATA_RETURN_IF_ERROR(Exec(kEnsureEdge, tenant, edge_id, now_ms));
      STRATA_ASSIGN_OR_RETURN(auto mark_stmt, db_->Prepare(kSelectHighWaterMark));
      STRATA_ASSIGN_OR_RETURN(bool found, mark_stmt.Bind(1, tenant).Bind(2, edge_id).Step());
      if (!found) return absl::InternalError("edge row vanished inside its transaction");
      auto mark = static_cast<std::uint64_t>(mark_stmt.Int(0));
      const auto epoch = static_cast<std::uint64_t>(mark_stmt.Int(1));
      mark_stmt.Reset();
      if (epoch != session_epoch) return SupersededError(edge_id, session_epoch, epoch);

      std::vector<EdgeBatchResult> results;
      std::map<std::string, std::int64_t> devices;  // device -> max ts written
      STRATA_ASSIGN_OR_RETURN(auto create, db_->Prepare(kAutoCreateDevice));
      STRATA_ASSIGN_OR_RETURN(auto upsert, db_->Prepare(kUpsertTelemetry));
      STRATA_ASSIGN_OR_RETURN(auto latest, db_->Prepare(kUpsertLatest));
      for (const auto* batch : batches) {
        EdgeBatchResult result;
        for (const auto& r : batch->readings()) {
          if (r.seq() <= mark) continue;
          auto [it, fresh] = devices.emplace(r.device_id(), r.ts());
          if (fresh) {
            create.Reset();
            STRATA_RETURN_IF_ERROR(create.Bind(1, tenant).Bind(2, r.device_id()).Bind(3, edge_id).Bind(4, now_ms).Run());
          } else {
            it->second = std::max(it->second, r.ts());
          }
          STRATA_RETURN_IF_ERROR(UpsertPoint(upsert, latest, tenant, r.device_id(), r.key(), r.ts(), r.value()));
          ++result.written;
        }
        mark = std::max(mark, batch->last_seq());
        result.high_water_mark = mark;
        results.push_back(result);
      }
      STRATA_ASSIGN_OR_RETURN(auto touch, db_->Prepare(kTouchDeviceFromEdge));
      for (const auto& [device_id, ts] : devices) {
        touch.Reset();
        STRATA_RETURN_IF_ERROR(touch.Bind(1, tenant).Bind(2, device_id).Bind(3, ts).Bind(4, edge_id).Run());
      }
      STRATA_ASSIGN_OR_RETURN(auto advance, db_->Prepare(kAdvanceEdge));
      advance.Bind(1, tenant).Bind(2, edge_id).Bind(3, static_cast<std::int64_t>(mark)).Bind(4, now_ms);
      STRATA_ASSIGN_OR_RETURN(bool advanced, advance.Step());
      if (!advanced) return absl::InternalError("edge row vanished inside its transaction");
      STRATA_RETURN_IF_ERROR(advance.Run());
      STRATA_RETURN_IF_ERROR(tx.Commit());
      return results;
    });
  }

  absl::StatusOr<RetentionResult> DropTelemetryBefore(std::int64_t cutoff_ms) override {
    // In chunks, each its own short transaction, so writers wait for one chunk at most.
    RetentionResult result;
    for (;;) {
      auto n = Run([&]() -> absl::StatusOr<std::uint64_t> {
        STRATA_ASSIGN_OR_RETURN(auto tx, sqlite::Transaction::Begin(*db_));
        STRATA_RETURN_IF_ERROR(Exec(kDeleteTelemetryBefore, cutoff_ms));
        const auto deleted = static_cast<std::uint64_t>(db_->Changes());
        STRATA_RETURN_IF_ERROR(tx.Commit());
        return deleted;
      });
      if (!n.ok()) return n.status();
      result.rows_deleted += *n;
      if (*n < kRetentionChunk) return result;
    }
  }

 private:
  static absl::Status UpsertPoint(sqlite::Statement& upsert, sqlite::Statement& latest, std::string_view tenant,
                                  std::string_view device_id, std::string_view key, std::int64_t ts,
                                  const v1::Value& value) {
    for (sqlite::Statement* s : {&upsert, &latest}) {
      s->Reset();
      s->Bind(1, tenant).Bind(2, device_id).Bind(3, key).Bind(4, ts);
      STRATA_RETURN_IF_ERROR(BindValue(*s, 5, value).Run());
    }
    return absl::OkStatus();
  }

  // Prepares `sql`, binds `args` to ?1, ?2, ... and runs it (a statement without rows).
  template <typename... Args>
  absl::Status Exec(std::string_view sql, const Args&... args) {
    STRATA_ASSIGN_OR_RETURN(auto s, db_->Prepare(sql));
    int i = 0;
    (s.Bind(++i, args), ...);
    return s.Run();
  }

  // Runs `f` holding mu_; SQLite's errors come out in the API's words.
  template <typename F>
  auto Run(F&& f) -> decltype(f()) {
    std::lock_guard lock(mu_);
    try {
      auto result = f();
      if (!result.ok()) return InApiWords(Status(result));
      return result;
    } catch (const std::exception& e) {  // std::bad_alloc, or a bug in the protobuf/JSON code
      return InternalDbError("SQLite", e.what());
    }
  }

  static absl::Status Status(const absl::Status& s) { return s; }
  template <typename T>
  static absl::Status Status(const absl::StatusOr<T>& s) { return s.status(); }

  std::mutex mu_;
  const std::unique_ptr<sqlite::Connection> db_;  // guarded by mu_ (used only inside Run)
  const Clock clock_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Database>> OpenSqliteDatabase(const std::string& path, Clock clock) {
  return SqliteDatabase::Open(path, std::move(clock));
}

}  // namespace strata::storage
