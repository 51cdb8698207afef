// The SQLite backend: the embedded default for the quickstart and small sites.
//
// One connection in WAL mode with a busy timeout, guarded by one mutex (mu_): SQLite runs one
// writer at a time anyway, and a single connection keeps transactions simple. Writes use
// BEGIN IMMEDIATE so a second process on the same file waits (busy timeout) instead of
// failing half-way through a transaction.
#include <sqlite3.h>

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
#include "migrations.h"
#include "strata/clock.h"

namespace strata::storage {
namespace {

constexpr int kBusyTimeoutMs = 5000;

// Debian's abseil has its own string_view type: hand it std::strings.
std::string Str(std::string_view s) { return std::string(s); }

// Thrown by the helpers below and turned into an absl::Status at the interface boundary
// (SqliteDatabase::Run): never leaves this file.
struct SqliteError : std::runtime_error {
  SqliteError(int code, const std::string& what) : std::runtime_error(what), code(code) {}
  int code;
};

[[noreturn]] void Throw(sqlite3* db, int rc, std::string_view context) {
  throw SqliteError(sqlite3_extended_errcode(db) ? sqlite3_extended_errcode(db) : rc,
                    absl::StrCat(Str(context), ": ", sqlite3_errmsg(db)));
}

absl::Status ToStatus(const SqliteError& e) {
  switch (e.code) {
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_UNIQUE:
      return ConflictError("SQLite", e.what());
    default:
      break;
  }
  switch (e.code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_CANTOPEN:
    case SQLITE_FULL:
    case SQLITE_IOERR:
      return UnavailableDbError("SQLite", e.what());
    default:
      return InternalDbError("SQLite", e.what());
  }
}

// A prepared statement. Used by one thread at a time (the caller holds mu_).
class Stmt {
 public:
  Stmt(sqlite3* db, std::string_view sql) : db_(db) {
    int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr);
    if (rc != SQLITE_OK) Throw(db, rc, "prepare");
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& Bind(int i, std::int64_t v) { return Check(sqlite3_bind_int64(stmt_, i, v)); }
  Stmt& Bind(int i, int v) { return Bind(i, static_cast<std::int64_t>(v)); }
  Stmt& Bind(int i, bool v) { return Bind(i, static_cast<std::int64_t>(v ? 1 : 0)); }
  Stmt& Bind(int i, double v) { return Check(sqlite3_bind_double(stmt_, i, v)); }
  Stmt& Bind(int i, std::string_view v) {
    return Check(sqlite3_bind_text64(stmt_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
  }
  Stmt& Bind(int i, const std::string& v) { return Bind(i, std::string_view(v)); }
  Stmt& Bind(int i, const char* v) = delete;  // say std::string_view explicitly
  Stmt& BindNull(int i) { return Check(sqlite3_bind_null(stmt_, i)); }
  Stmt& Bind(int i, const std::optional<std::string>& v) { return v ? Bind(i, *v) : BindNull(i); }

  // Binds the four value columns (double, int, bool, string) starting at `first`.
  Stmt& BindValue(int first, const v1::Value& v) {
    for (int k = 0; k < 4; ++k) BindNull(first + k);
    switch (v.kind_case()) {
      case v1::Value::kDoubleValue: return Bind(first, v.double_value());
      case v1::Value::kIntValue: return Bind(first + 1, static_cast<std::int64_t>(v.int_value()));
      case v1::Value::kBoolValue: return Bind(first + 2, v.bool_value());
      case v1::Value::kStringValue: return Bind(first + 3, std::string_view(v.string_value()));
      case v1::Value::KIND_NOT_SET: break;
    }
    return *this;  // unreachable after ValidatePoints() / ValidateBatch(); the CHECK constraint would refuse it
  }

  // True when a row is ready; false when done.
  bool Step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    Throw(db_, rc, "step");
  }
  void Run() {
    while (Step()) {
    }
  }
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  double Double(int col) const { return sqlite3_column_double(stmt_, col); }
  std::string Text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, sqlite3_column_bytes(stmt_, col)) : std::string();
  }
  // The value columns (double, int, bool, string) starting at `first`.
  v1::Value Value(int first) const {
    v1::Value v;
    if (!IsNull(first)) v.set_double_value(Double(first));
    else if (!IsNull(first + 1)) v.set_int_value(Int(first + 1));
    else if (!IsNull(first + 2)) v.set_bool_value(Int(first + 2) != 0);
    else if (!IsNull(first + 3)) v.set_string_value(Text(first + 3));
    return v;
  }

 private:
  Stmt& Check(int rc) {
    if (rc != SQLITE_OK) Throw(db_, rc, "bind");
    return *this;
  }
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

void Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    throw SqliteError(sqlite3_extended_errcode(db), msg);
  }
}

// BEGIN IMMEDIATE ... COMMIT; rolls back unless committed.
class WriteTx {
 public:
  explicit WriteTx(sqlite3* db) : db_(db) { Exec(db_, "BEGIN IMMEDIATE"); }
  ~WriteTx() {
    if (!done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  void Commit() {
    Exec(db_, "COMMIT");
    done_ = true;
  }

 private:
  sqlite3* db_;
  bool done_ = false;
};

// ---- SQL -------------------------------------------------------------------------------

constexpr std::string_view kCreateMigrationsTable =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)";
constexpr std::string_view kSelectMigration = "SELECT 1 FROM schema_migrations WHERE version = ?1";
constexpr std::string_view kInsertMigration =
    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)";

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

// Column order of kSelectDevice and friends.
absl::StatusOr<v1::Device> ReadDevice(const Stmt& s, std::string_view tenant) {
  v1::Device d;
  d.set_device_id(s.Text(0));
  d.set_tenant_id(std::string(tenant));
  d.set_name(s.Text(1));
  d.set_type(s.Text(2));
  if (auto st = DecodeStringMap(s.Text(3), d.mutable_labels()); !st.ok()) return st;
  if (auto st = DecodeStringMap(s.Text(4), d.mutable_attributes()); !st.ok()) return st;
  d.set_edge_id(s.Text(5));
  d.set_created_at(s.Int(6));
  d.set_updated_at(s.Int(7));
  d.set_last_seen_at(s.Int(8));
  return d;
}

absl::StatusOr<v1::Edge> ReadEdge(const Stmt& s, std::string_view tenant) {
  v1::Edge e;
  e.set_edge_id(s.Text(0));
  e.set_tenant_id(std::string(tenant));
  e.set_name(s.Text(1));
  if (auto st = DecodeStringMap(s.Text(2), e.mutable_labels()); !st.ok()) return st;
  e.set_created_at(s.Int(3));
  e.set_updated_at(s.Int(4));
  e.set_last_seen_at(s.Int(5));
  e.set_high_water_mark(static_cast<std::uint64_t>(s.Int(6)));
  return e;
}

std::optional<std::string> KeysParam(const std::vector<std::string>& keys) {
  if (keys.empty()) return std::nullopt;
  return EncodeJsonArray(keys);
}

class SqliteDatabase final : public Database, public DeviceStore, public EdgeStore, public TelemetryStore {
 public:
  explicit SqliteDatabase(sqlite3* db) : db_(db) {}
  ~SqliteDatabase() override { sqlite3_close_v2(db_); }

  static absl::StatusOr<std::unique_ptr<Database>> Open(const std::string& path) {
    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
    if (rc != SQLITE_OK) {
      std::string msg = raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
      sqlite3_close_v2(raw);
      return absl::UnavailableError(absl::StrCat("cannot open SQLite database ", path, ": ", msg));
    }
    auto db = std::make_unique<SqliteDatabase>(raw);
    if (auto s = db->Setup(); !s.ok()) return s;
    return std::unique_ptr<Database>(std::move(db));
  }

  DeviceStore& Devices() override { return *this; }
  EdgeStore& Edges() override { return *this; }
  TelemetryStore& Telemetry() override { return *this; }
  std::string_view Backend() const override { return "sqlite"; }

  absl::Status Ping() override {
    return Run([&]() -> absl::Status {
      Stmt s(db_, kPing);
      s.Run();
      return absl::OkStatus();
    });
  }

  // ---- devices ----

  absl::StatusOr<v1::Device> CreateDevice(std::string_view tenant, const v1::Device& device) override {
    if (device.device_id().empty()) return absl::InvalidArgumentError("empty device_id");
    return NameConflict<v1::Device>(Run([&]() -> absl::StatusOr<v1::Device> {
      const std::int64_t now = NowMs();
      Stmt s(db_, kInsertDevice);
      s.Bind(1, tenant).Bind(2, device.device_id()).Bind(3, device.name()).Bind(4, device.type())
          .Bind(5, EncodeStringMap(device.labels())).Bind(6, EncodeStringMap(device.attributes()))
          .Bind(7, device.edge_id()).Bind(8, now);
      s.Run();
      v1::Device out = device;
      out.set_tenant_id(std::string(tenant));
      out.set_created_at(now);
      out.set_updated_at(now);
      out.set_last_seen_at(0);
      return out;
    }), "device '" + device.device_id() + "'");
  }

  absl::StatusOr<v1::Device> GetDevice(std::string_view tenant, std::string_view device_id) override {
    return Run([&]() -> absl::StatusOr<v1::Device> {
      Stmt s(db_, kSelectDevice);
      s.Bind(1, tenant).Bind(2, device_id);
      if (!s.Step()) return NotFound("device", Str(device_id));
      return ReadDevice(s, tenant);
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
      Stmt s(db_, kListDevices);
      s.Bind(1, tenant).Bind(2, query.after_device_id).Bind(3, filter).Bind(4, PageLimit(query.page_size));
      std::vector<v1::Device> out;
      while (s.Step()) {
        auto d = ReadDevice(s, tenant);
        if (!d.ok()) return d.status();
        out.push_back(*std::move(d));
      }
      return out;
    });
  }

  absl::StatusOr<v1::Device> UpdateDevice(std::string_view tenant, const v1::Device& device,
                                          const DeviceUpdate& fields) override {
    return Run([&]() -> absl::StatusOr<v1::Device> {
      Stmt s(db_, kUpdateDevice);
      s.Bind(1, tenant).Bind(2, device.device_id())
          .Bind(3, fields.name).Bind(4, device.name())
          .Bind(5, fields.type).Bind(6, device.type())
          .Bind(7, fields.labels).Bind(8, EncodeStringMap(device.labels()))
          .Bind(9, fields.attributes).Bind(10, EncodeStringMap(device.attributes()))
          .Bind(11, NowMs());
      if (!s.Step()) return NotFound("device", device.device_id());
      auto out = ReadDevice(s, tenant);
      s.Run();
      return out;
    });
  }

  absl::Status DeleteDevice(std::string_view tenant, std::string_view device_id) override {
    return Run([&]() -> absl::Status {
      WriteTx tx(db_);
      Stmt del(db_, kDeleteDevice);
      del.Bind(1, tenant).Bind(2, device_id).Run();
      if (sqlite3_changes(db_) == 0) return NotFound("device", Str(device_id));
      Stmt(db_, kDeleteDeviceTelemetry).Bind(1, tenant).Bind(2, device_id).Run();
      Stmt(db_, kDeleteDeviceLatest).Bind(1, tenant).Bind(2, device_id).Run();
      tx.Commit();
      return absl::OkStatus();
    });
  }

  // ---- edges ----

  absl::StatusOr<v1::Edge> CreateEdge(std::string_view tenant, const v1::Edge& edge) override {
    if (edge.edge_id().empty()) return absl::InvalidArgumentError("empty edge_id");
    return NameConflict<v1::Edge>(Run([&]() -> absl::StatusOr<v1::Edge> {
      const std::int64_t now = NowMs();
      Stmt(db_, kInsertEdge).Bind(1, tenant).Bind(2, edge.edge_id()).Bind(3, edge.name())
          .Bind(4, EncodeStringMap(edge.labels())).Bind(5, now).Run();
      v1::Edge out = edge;
      out.set_tenant_id(std::string(tenant));
      out.set_created_at(now);
      out.set_updated_at(now);
      out.set_last_seen_at(0);
      out.set_high_water_mark(0);
      return out;
    }), "edge '" + edge.edge_id() + "'");
  }

  absl::StatusOr<v1::Edge> GetEdge(std::string_view tenant, std::string_view edge_id) override {
    return Run([&]() -> absl::StatusOr<v1::Edge> {
      Stmt s(db_, kSelectEdge);
      s.Bind(1, tenant).Bind(2, edge_id);
      if (!s.Step()) return NotFound("edge", Str(edge_id));
      return ReadEdge(s, tenant);
    });
  }

  absl::StatusOr<std::vector<v1::Edge>> ListEdges(std::string_view tenant, int page_size,
                                                  std::string_view after_edge_id) override {
    return Run([&]() -> absl::StatusOr<std::vector<v1::Edge>> {
      Stmt s(db_, kListEdges);
      s.Bind(1, tenant).Bind(2, after_edge_id).Bind(3, PageLimit(page_size));
      std::vector<v1::Edge> out;
      while (s.Step()) {
        auto e = ReadEdge(s, tenant);
        if (!e.ok()) return e.status();
        out.push_back(*std::move(e));
      }
      return out;
    });
  }

  absl::StatusOr<EdgeSession> TouchEdge(std::string_view tenant, std::string_view edge_id,
                                        std::int64_t now_ms) override {
    if (edge_id.empty()) return absl::InvalidArgumentError("empty edge_id");
    return Run([&]() -> absl::StatusOr<EdgeSession> {
      WriteTx tx(db_);
      Stmt s(db_, kTouchEdge);
      s.Bind(1, tenant).Bind(2, edge_id).Bind(3, now_ms);
      if (!s.Step()) return absl::InternalError("TouchEdge returned no row");
      EdgeSession session{static_cast<std::uint64_t>(s.Int(0)), static_cast<std::uint64_t>(s.Int(1))};
      s.Run();
      tx.Commit();
      return session;
    });
  }

  // ---- telemetry ----

  absl::Status Write(std::string_view tenant, std::string_view device_id, const std::vector<Point>& points) override {
    if (auto s = ValidatePoints(points); !s.ok()) return s;
    return Run([&]() -> absl::Status {
      WriteTx tx(db_);
      std::int64_t max_ts = std::numeric_limits<std::int64_t>::min();
      for (const auto& p : points) max_ts = std::max(max_ts, p.ts);
      Stmt touch(db_, kTouchDevice);
      touch.Bind(1, tenant).Bind(2, device_id).Bind(3, points.empty() ? std::int64_t{0} : max_ts).Run();
      if (sqlite3_changes(db_) == 0) return NotFound("device", Str(device_id));
      Stmt upsert(db_, kUpsertTelemetry);
      Stmt latest(db_, kUpsertLatest);
      // In batch order, so a later point of the same (key, ts) wins.
      for (const auto& p : points) {
        UpsertPoint(upsert, latest, tenant, device_id, p.key, p.ts, p.value);
      }
      tx.Commit();
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::vector<v1::Reading>> Query(std::string_view tenant, const TelemetryQuery& q) override {
    return Run([&]() -> absl::StatusOr<std::vector<v1::Reading>> {
      Stmt s(db_, q.descending ? kQueryDesc : kQueryAsc);
      s.Bind(1, tenant).Bind(2, q.device_id).Bind(3, q.start)
          .Bind(4, q.end == 0 ? std::numeric_limits<std::int64_t>::max() : q.end)
          .Bind(5, KeysParam(q.keys));
      if (q.after) s.Bind(6, q.after->ts).Bind(7, q.after->key);
      s.Bind(8, static_cast<std::int64_t>(std::max(q.limit, 0)) + 1);
      std::vector<v1::Reading> out;
      while (s.Step()) out.push_back(ReadReading(s, q.device_id));
      return out;
    });
  }

  absl::StatusOr<std::vector<v1::Reading>> Latest(std::string_view tenant, std::string_view device_id,
                                                  const std::vector<std::string>& keys) override {
    return Run([&]() -> absl::StatusOr<std::vector<v1::Reading>> {
      Stmt s(db_, kLatest);
      s.Bind(1, tenant).Bind(2, device_id).Bind(3, KeysParam(keys));
      std::vector<v1::Reading> out;
      while (s.Step()) out.push_back(ReadReading(s, device_id));
      return out;
    });
  }

  absl::StatusOr<std::vector<v1::AggregateSeries>> Aggregate(std::string_view tenant,
                                                             const AggregateQuery& q) override {
    if (q.keys.empty()) return absl::InvalidArgumentError("aggregate needs at least one key");
    if (q.interval <= 0) return absl::InvalidArgumentError("aggregate interval must be positive");
    if (q.end <= q.start) return absl::InvalidArgumentError("aggregate end must be after start");
    return Run([&]() -> absl::StatusOr<std::vector<v1::AggregateSeries>> {
      Stmt s(db_, kAggregate);
      s.Bind(1, tenant).Bind(2, q.device_id).Bind(3, q.start).Bind(4, q.end).Bind(5, q.interval)
          .Bind(6, EncodeJsonArray(q.keys));
      std::map<std::string, std::vector<v1::Bucket>> by_key;
      while (s.Step()) {
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
      }
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
      WriteTx tx(db_);  // BEGIN IMMEDIATE: the mark cannot move under us
      Stmt(db_, kEnsureEdge).Bind(1, tenant).Bind(2, edge_id).Bind(3, now_ms).Run();
      Stmt mark_stmt(db_, kSelectHighWaterMark);
      mark_stmt.Bind(1, tenant).Bind(2, edge_id);
      if (!mark_stmt.Step()) return absl::InternalError("edge row vanished inside its transaction");
      auto mark = static_cast<std::uint64_t>(mark_stmt.Int(0));
      const auto epoch = static_cast<std::uint64_t>(mark_stmt.Int(1));
      mark_stmt.Reset();
      if (epoch != session_epoch) return SupersededError(edge_id, session_epoch, epoch);

      std::vector<EdgeBatchResult> results;
      std::map<std::string, std::int64_t> devices;  // device -> max ts written
      Stmt create(db_, kAutoCreateDevice);
      Stmt upsert(db_, kUpsertTelemetry);
      Stmt latest(db_, kUpsertLatest);
      for (const auto* batch : batches) {
        EdgeBatchResult result;
        for (const auto& r : batch->readings()) {
          if (r.seq() <= mark) continue;
          auto [it, fresh] = devices.emplace(r.device_id(), r.ts());
          if (fresh) {
            create.Reset();
            create.Bind(1, tenant).Bind(2, r.device_id()).Bind(3, edge_id).Bind(4, now_ms).Run();
          } else {
            it->second = std::max(it->second, r.ts());
          }
          UpsertPoint(upsert, latest, tenant, r.device_id(), r.key(), r.ts(), r.value());
          ++result.written;
        }
        mark = std::max(mark, batch->last_seq());
        result.high_water_mark = mark;
        results.push_back(result);
      }
      Stmt touch(db_, kTouchDeviceFromEdge);
      for (const auto& [device_id, ts] : devices) {
        touch.Reset();
        touch.Bind(1, tenant).Bind(2, device_id).Bind(3, ts).Bind(4, edge_id).Run();
      }
      Stmt advance(db_, kAdvanceEdge);
      advance.Bind(1, tenant).Bind(2, edge_id).Bind(3, static_cast<std::int64_t>(mark)).Bind(4, now_ms);
      if (!advance.Step()) return absl::InternalError("edge row vanished inside its transaction");
      advance.Run();
      tx.Commit();
      return results;
    });
  }

  absl::StatusOr<RetentionResult> DropTelemetryBefore(std::int64_t cutoff_ms) override {
    // In chunks, each its own short transaction, so writers wait for one chunk at most.
    RetentionResult result;
    for (;;) {
      auto n = Run([&]() -> absl::StatusOr<std::uint64_t> {
        WriteTx tx(db_);
        Stmt(db_, kDeleteTelemetryBefore).Bind(1, cutoff_ms).Run();
        const auto deleted = static_cast<std::uint64_t>(sqlite3_changes(db_));
        tx.Commit();
        return deleted;
      });
      if (!n.ok()) return n.status();
      result.rows_deleted += *n;
      if (*n < kRetentionChunk) return result;
    }
  }

 private:
  static std::int64_t PageLimit(int page_size) {
    return static_cast<std::int64_t>(page_size > 0 ? page_size : 100) + 1;
  }

  static v1::Reading ReadReading(const Stmt& s, std::string_view device_id) {
    v1::Reading r;
    r.set_device_id(std::string(device_id));
    r.set_key(s.Text(0));
    r.set_ts(s.Int(1));
    *r.mutable_value() = s.Value(2);
    return r;
  }

  static void UpsertPoint(Stmt& upsert, Stmt& latest, std::string_view tenant, std::string_view device_id,
                          std::string_view key, std::int64_t ts, const v1::Value& value) {
    for (Stmt* s : {&upsert, &latest}) {
      s->Reset();
      s->Bind(1, tenant).Bind(2, device_id).Bind(3, key).Bind(4, ts).BindValue(5, value);
      s->Run();
    }
  }

  absl::Status Setup() {
    return Run([&]() -> absl::Status {
      sqlite3_busy_timeout(db_, kBusyTimeoutMs);
      {
        Stmt wal(db_, "PRAGMA journal_mode=WAL");
        if (wal.Step() && wal.Text(0) != "wal" && wal.Text(0) != "memory") {
          spdlog::warn("SQLite: journal_mode is {}, not wal", wal.Text(0));
        }
      }
      // In WAL mode NORMAL loses no committed data on a process crash, only on power loss.
      Exec(db_, "PRAGMA synchronous=NORMAL");
      Exec(db_, std::string(kCreateMigrationsTable));
      for (const Migration& m : SqliteMigrations()) {
        WriteTx tx(db_);  // serialises concurrent openers of the same file
        Stmt seen(db_, kSelectMigration);
        seen.Bind(1, m.version);
        if (seen.Step()) continue;  // ~WriteTx rolls back the empty transaction
        Exec(db_, std::string(m.sql));
        Stmt(db_, kInsertMigration).Bind(1, m.version).Bind(2, m.name).Bind(3, NowMs()).Run();
        tx.Commit();
        spdlog::info("SQLite: applied migration {} ({})", m.version, m.name);
      }
      return absl::OkStatus();
    });
  }

  // Runs `f` holding mu_, turning SQLite errors into statuses.
  template <typename F>
  auto Run(F&& f) -> decltype(f()) {
    std::lock_guard lock(mu_);
    try {
      return f();
    } catch (const SqliteError& e) {
      return ToStatus(e);
    } catch (const std::exception& e) {
      return InternalDbError("SQLite", e.what());
    }
  }

  std::mutex mu_;
  sqlite3* const db_;  // guarded by mu_ (used only inside Run)
};

}  // namespace

absl::StatusOr<std::unique_ptr<Database>> OpenSqliteDatabase(const std::string& path) {
  return SqliteDatabase::Open(path);
}

}  // namespace strata::storage
