// The PostgreSQL backend (production), through libpqxx 6.4.
//
// Every operation leases one connection from a bounded pool (PgPool) and runs one
// transaction on it. Telemetry lands in a table range-partitioned by UTC day; partitions are
// created ahead of the writes that need them, outside the write transaction (creating one
// locks the parent table, which must not be held for the length of a write). Ingest COPYs the
// batch into a per-session temporary staging table and moves it into telemetry with one
// INSERT ... SELECT DISTINCT ON ... ON CONFLICT, so the last write of a (device, key, ts) wins
// even inside one batch.
//
// Lock order inside write transactions, to keep concurrent writers free of deadlocks: the
// edge row, then device rows in device_id order, then telemetry and telemetry_latest rows.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

#include <absl/container/flat_hash_map.h>
#include <absl/container/flat_hash_set.h>
#include <absl/strings/match.h>
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>
#include <absl/strings/substitute.h>
#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

#include "backends.h"
#include "codec.h"
#include "rows.h"
#include "migrations.h"
#include "pg_pool.h"
#include "strata/clock.h"

namespace strata::storage {
namespace {

constexpr std::int64_t kDayMs = 86'400'000;
// Day partitions exist for the days of the window [today - behind, today + ahead]: made
// ahead for today and the days after it when the database opens, and for a day of the window
// when a write first touches it. Readings of other days go to telemetry_default (migration
// 0003), so no write makes more than the window's partitions.
constexpr int kPartitionDaysAhead = 3;
constexpr int kPartitionDaysBehind = 7;
// Partition names spell years 0001 to 9999; the telemetry model's ts range (1970 to 9999,
// checked before any SQL) lies inside.
// Any constant shared by every Strata process: the key of the migration advisory lock.
constexpr std::int64_t kMigrationLockKey = 0x5374726174614d31;  // "StrataM1"
constexpr int kMaxAttempts = 3;

// ---- SQL -------------------------------------------------------------------------------

constexpr std::string_view kLockMigrations = "SELECT pg_advisory_lock($1)";
constexpr std::string_view kUnlockMigrations = "SELECT pg_advisory_unlock($1)";
constexpr std::string_view kCreateMigrationsTable =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version bigint PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)";
constexpr std::string_view kSelectMigration = "SELECT 1 FROM schema_migrations WHERE version = $1";
constexpr std::string_view kInsertMigration =
    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)";

constexpr std::string_view kListPartitions =
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
    " WHERE i.inhparent = 'telemetry'::regclass";
// DDL takes no bind parameters: $0 is built from digits only, $1 and $2 are integers.
constexpr std::string_view kCreatePartition =
    "CREATE TABLE IF NOT EXISTS $0 PARTITION OF telemetry FOR VALUES FROM ($1) TO ($2)";
// A day whose rows are in the default partition: they move into the day's new partition in
// one transaction (writers and readers of the default wait for it: the ATTACH locks it).
// Serialises the moves of every process (a transaction-scoped advisory lock), then takes the
// tables in the order CREATE ... PARTITION OF and DETACH take them: parent, then default.
constexpr std::int64_t kPartitionMoveLockKey = 0x5374726174615032;  // "StrataP2"
constexpr std::string_view kLockPartitionMoves = "SELECT pg_advisory_xact_lock($1)";
constexpr std::string_view kPartitionExists = "SELECT to_regclass($1) IS NOT NULL";
constexpr std::string_view kLockParentForMove = "LOCK TABLE telemetry IN SHARE UPDATE EXCLUSIVE MODE";
constexpr std::string_view kLockDefaultPartition = "LOCK TABLE telemetry_default IN EXCLUSIVE MODE";
constexpr std::string_view kCreateDayTable =
    "CREATE TABLE $0 (LIKE telemetry INCLUDING DEFAULTS INCLUDING CONSTRAINTS)";
constexpr std::string_view kMoveFromDefault =
    "WITH moved AS (DELETE FROM telemetry_default WHERE ts >= $1 AND ts < $2"
    "   RETURNING tenant_id, device_id, key, ts, v_double, v_int, v_bool, v_string)"
    " INSERT INTO $0 (tenant_id, device_id, key, ts, v_double, v_int, v_bool, v_string) SELECT * FROM moved";
constexpr std::string_view kAttachPartition = "ALTER TABLE telemetry ATTACH PARTITION $0 FOR VALUES FROM ($1) TO ($2)";
// In chunks, each its own short statement, so writers of the default wait for one at most.
constexpr std::string_view kDeleteDefaultBefore =
    "DELETE FROM telemetry_default WHERE ctid IN (SELECT ctid FROM telemetry_default WHERE ts < $1 LIMIT $2)";
constexpr std::int64_t kDefaultDeleteChunk = 10000;
// Retention: one DROP of the partition (it leaves the parent with it: no half-done state if
// the process dies, as DETACH then DROP could leave). It locks telemetry for the catalog
// change; DETACH ... CONCURRENTLY is refused while a default partition exists.
constexpr std::string_view kDropTable = "DROP TABLE IF EXISTS $0";

constexpr std::string_view kInsertDevice =
    "INSERT INTO devices (tenant_id, device_id, name, type, labels, attributes, edge_id,"
    " created_at, updated_at, last_seen_at)"
    " VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8, $8, 0)";
constexpr std::string_view kSelectDevice =
    "SELECT device_id, name, type, labels::text, attributes::text, edge_id, created_at, updated_at,"
    " last_seen_at FROM devices WHERE tenant_id = $1 AND device_id = $2";
// $3: a JSON object of labels that must all be present, or NULL for no filter.
constexpr std::string_view kListDevices =
    "SELECT device_id, name, type, labels::text, attributes::text, edge_id, created_at, updated_at,"
    " last_seen_at FROM devices"
    " WHERE tenant_id = $1 AND device_id > $2 AND ($3::jsonb IS NULL OR labels @> $3::jsonb)"
    " ORDER BY device_id LIMIT $4";
constexpr std::string_view kUpdateDevice =
    "UPDATE devices SET"
    " name = CASE WHEN $3::boolean THEN $4 ELSE name END,"
    " type = CASE WHEN $5::boolean THEN $6 ELSE type END,"
    " labels = CASE WHEN $7::boolean THEN $8::jsonb ELSE labels END,"
    " attributes = CASE WHEN $9::boolean THEN $10::jsonb ELSE attributes END,"
    " updated_at = $11"
    " WHERE tenant_id = $1 AND device_id = $2"
    " RETURNING device_id, name, type, labels::text, attributes::text, edge_id, created_at,"
    " updated_at, last_seen_at";
constexpr std::string_view kDeleteDevice =
    "DELETE FROM devices WHERE tenant_id = $1 AND device_id = $2 RETURNING 1";
constexpr std::string_view kDeleteDeviceTelemetry =
    "DELETE FROM telemetry WHERE tenant_id = $1 AND device_id = $2";
constexpr std::string_view kDeleteDeviceLatest =
    "DELETE FROM telemetry_latest WHERE tenant_id = $1 AND device_id = $2";
// Checks the device exists and locks its row for the rest of the write.
constexpr std::string_view kTouchDevice =
    "UPDATE devices SET last_seen_at = GREATEST(last_seen_at, $3)"
    " WHERE tenant_id = $1 AND device_id = $2 RETURNING 1";

constexpr std::string_view kInsertEdge =
    "INSERT INTO edges (tenant_id, edge_id, name, labels, created_at, updated_at, last_seen_at,"
    " high_water_mark) VALUES ($1, $2, $3, $4::jsonb, $5, $5, 0, 0)";
constexpr std::string_view kSelectEdge =
    "SELECT edge_id, name, labels::text, created_at, updated_at, last_seen_at, high_water_mark"
    " FROM edges WHERE tenant_id = $1 AND edge_id = $2";
constexpr std::string_view kListEdges =
    "SELECT edge_id, name, labels::text, created_at, updated_at, last_seen_at, high_water_mark"
    " FROM edges WHERE tenant_id = $1 AND edge_id > $2 ORDER BY edge_id LIMIT $3";
constexpr std::string_view kTouchEdge =
    "INSERT INTO edges (tenant_id, edge_id, name, created_at, updated_at, last_seen_at, session_epoch)"
    " VALUES ($1, $2, $2, $3, $3, $3, 1)"
    " ON CONFLICT (tenant_id, edge_id) DO UPDATE SET last_seen_at = excluded.last_seen_at,"
    " session_epoch = edges.session_epoch + 1"
    " RETURNING high_water_mark, session_epoch";
constexpr std::string_view kEnsureEdge =
    "INSERT INTO edges (tenant_id, edge_id, name, created_at, updated_at)"
    " VALUES ($1, $2, $2, $3, $3) ON CONFLICT (tenant_id, edge_id) DO NOTHING";
constexpr std::string_view kPeekEdge =
    "SELECT high_water_mark, session_epoch FROM edges WHERE tenant_id = $1 AND edge_id = $2";
constexpr std::string_view kLockEdge =
    "SELECT high_water_mark, session_epoch FROM edges WHERE tenant_id = $1 AND edge_id = $2 FOR UPDATE";
constexpr std::string_view kAdvanceEdge =
    "UPDATE edges SET high_water_mark = GREATEST(high_water_mark, $3), last_seen_at = $4"
    " WHERE tenant_id = $1 AND edge_id = $2 RETURNING high_water_mark";

// One staging table per session, emptied by every commit. seq orders the rows of a batch;
// kind says which value column v (as text) goes to (ValueKind).
constexpr std::string_view kCreateStaging =
    "CREATE TEMP TABLE IF NOT EXISTS telemetry_staging ("
    " seq bigint NOT NULL, device_id text COLLATE \"C\" NOT NULL, key text COLLATE \"C\" NOT NULL,"
    " ts bigint NOT NULL, kind smallint NOT NULL, v text NOT NULL) ON COMMIT DELETE ROWS";
constexpr std::string_view kStagingTable = "telemetry_staging";
// Of several rows for one (device, key, ts) the one with the highest seq wins.
constexpr std::string_view kInsertTelemetryFromStaging =
    "INSERT INTO telemetry AS t (tenant_id, device_id, key, ts, v_double, v_int, v_bool, v_string)"
    " SELECT DISTINCT ON (device_id, key, ts) $1, device_id, key, ts,"
    "  CASE WHEN kind = 1 THEN v::float8 END, CASE WHEN kind = 2 THEN v::bigint END,"
    "  CASE WHEN kind = 3 THEN v::boolean END, CASE WHEN kind = 4 THEN v END"
    " FROM telemetry_staging ORDER BY device_id, key, ts, seq DESC"
    " ON CONFLICT (tenant_id, device_id, key, ts) DO UPDATE SET"
    "  v_double = excluded.v_double, v_int = excluded.v_int, v_bool = excluded.v_bool,"
    "  v_string = excluded.v_string";
// The newest row per (device, key) replaces the latest value unless that one is newer.
constexpr std::string_view kUpsertLatestFromStaging =
    "INSERT INTO telemetry_latest AS l"
    " (tenant_id, device_id, key, ts, v_double, v_int, v_bool, v_string)"
    " SELECT DISTINCT ON (device_id, key) $1, device_id, key, ts,"
    "  CASE WHEN kind = 1 THEN v::float8 END, CASE WHEN kind = 2 THEN v::bigint END,"
    "  CASE WHEN kind = 3 THEN v::boolean END, CASE WHEN kind = 4 THEN v END"
    " FROM telemetry_staging ORDER BY device_id, key, ts DESC, seq DESC"
    " ON CONFLICT (tenant_id, device_id, key) DO UPDATE SET"
    "  ts = excluded.ts, v_double = excluded.v_double, v_int = excluded.v_int,"
    "  v_bool = excluded.v_bool, v_string = excluded.v_string"
    " WHERE excluded.ts >= l.ts";
constexpr std::string_view kAutoCreateDevicesFromStaging =
    "INSERT INTO devices (tenant_id, device_id, name, edge_id, created_at, updated_at)"
    " SELECT $1, device_id, device_id, $2, $3, $3"
    " FROM (SELECT DISTINCT device_id FROM telemetry_staging) s ORDER BY device_id"
    " ON CONFLICT (tenant_id, device_id) DO NOTHING";
constexpr std::string_view kLockDevicesFromStaging =
    "SELECT 1 FROM devices WHERE tenant_id = $1"
    " AND device_id IN (SELECT device_id FROM telemetry_staging)"
    " ORDER BY device_id FOR UPDATE";
constexpr std::string_view kTouchDevicesFromStaging =
    "UPDATE devices d SET last_seen_at = GREATEST(d.last_seen_at, s.max_ts), edge_id = $2"
    " FROM (SELECT device_id, max(ts) AS max_ts FROM telemetry_staging GROUP BY device_id) s"
    " WHERE d.tenant_id = $1 AND d.device_id = s.device_id";

// $5: a text[] of keys, or NULL for all; $6: whether the cursor ($7, $8) applies.
constexpr std::string_view kQueryAsc =
    "SELECT key, ts, v_double, v_int, v_bool, v_string FROM telemetry"
    " WHERE tenant_id = $1 AND device_id = $2 AND ts >= $3 AND ts < $4"
    " AND ($5::text[] IS NULL OR key = ANY($5::text[]))"
    " AND (NOT $6::boolean OR (ts, key) > ($7::bigint, $8::text))"
    " ORDER BY ts, key LIMIT $9";
constexpr std::string_view kQueryDesc =
    "SELECT key, ts, v_double, v_int, v_bool, v_string FROM telemetry"
    " WHERE tenant_id = $1 AND device_id = $2 AND ts >= $3 AND ts < $4"
    " AND ($5::text[] IS NULL OR key = ANY($5::text[]))"
    " AND (NOT $6::boolean OR (ts, key) < ($7::bigint, $8::text))"
    " ORDER BY ts DESC, key DESC LIMIT $9";
constexpr std::string_view kLatest =
    "SELECT key, ts, v_double, v_int, v_bool, v_string FROM telemetry_latest"
    " WHERE tenant_id = $1 AND device_id = $2 AND ($3::text[] IS NULL OR key = ANY($3::text[]))"
    " ORDER BY key";
// Every bucket of every key in one statement. ts >= $3, so integer division floors.
// Integers and doubles fold together as float8; bool and string rows have neither and drop out.
constexpr std::string_view kAggregate =
    "SELECT key, $3::bigint + (ts - $3::bigint) / $5::bigint * $5::bigint AS bucket,"
    " avg(v), min(v), max(v), sum(v), count(v)"
    " FROM (SELECT key, ts, coalesce(v_double, v_int::float8) AS v FROM telemetry"
    "       WHERE tenant_id = $1 AND device_id = $2 AND key = ANY($6::text[])"
    "       AND ts >= $3::bigint AND ts < $4::bigint) s"
    " WHERE v IS NOT NULL GROUP BY key, bucket ORDER BY key, bucket";
constexpr std::string_view kPing = "SELECT 1";

// ---- helpers ---------------------------------------------------------------------------

std::string Sql(std::string_view sql) { return std::string(sql); }
std::string Str(std::string_view s) { return std::string(s); }

std::int64_t DayOf(std::int64_t ts) { return ts >= 0 ? ts / kDayMs : -((-ts + kDayMs - 1) / kDayMs); }

std::string PartitionName(std::int64_t day) {
  using namespace std::chrono;
  const year_month_day ymd{sys_days{days{day}}};
  return absl::StrFormat("telemetry_p%04d%02d%02d", static_cast<int>(ymd.year()),
                         static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()));
}

// The day a partition named by PartitionName() holds; nullopt for other names.
std::optional<std::int64_t> DayOfPartition(std::string_view name) {
  constexpr std::string_view kPrefix = "telemetry_p";
  if (!absl::StartsWith(Str(name), Str(kPrefix)) || name.size() != kPrefix.size() + 8) return std::nullopt;
  int ymd = 0;
  if (!absl::SimpleAtoi(Str(name.substr(kPrefix.size())), &ymd)) return std::nullopt;
  using namespace std::chrono;
  const year_month_day date{year{ymd / 10000}, month{static_cast<unsigned>(ymd / 100 % 100)},
                            day{static_cast<unsigned>(ymd % 100)}};
  if (!date.ok()) return std::nullopt;
  return sys_days{date}.time_since_epoch().count();
}


// Connection-level failures: the session is gone and the pool must not hand it out again.
bool IsConnectionState(const std::string& state) {
  return absl::StartsWith(state, "08") || absl::StartsWith(state, "57P");
}

absl::Status SqlErrorStatus(const pqxx::sql_error& e) {
  const std::string& state = e.sqlstate();
  if (state == "23505") return ConflictError("PostgreSQL", e.what());
  if (IsConnectionState(state) || state == "53300") return UnavailableDbError("PostgreSQL", e.what());
  // A data exception (22xxx) would mean a value the telemetry model let through that the
  // database cannot take: a bug of ours, not the caller's input.
  return InternalDbError("PostgreSQL", e.what());
}

// A libpqxx row as storage/rows.h reads it.
struct PgRow {
  const pqxx::row& row;
  bool IsNull(int i) const { return row[i].is_null(); }
  std::string Text(int i) const { return row[i].as<std::string>(); }
  std::int64_t Int(int i) const { return row[i].as<std::int64_t>(); }
  double Double(int i) const { return row[i].as<double>(); }
  bool Bool(int i) const { return row[i].as<bool>(); }
};

// A staging row: seq, device_id, key, ts, kind, value as text.
using StagingRow = std::tuple<std::int64_t, std::string, std::string, std::int64_t, int, std::string>;

StagingRow ToStagingRow(std::int64_t seq, const std::string& device_id, const std::string& key,
                        std::int64_t ts, const v1::Value& value) {
  ValueKind kind = ValueKind::kString;
  std::string text;
  switch (value.kind_case()) {
    case v1::Value::kDoubleValue:
      kind = ValueKind::kDouble;
      text = FormatDouble(value.double_value());
      break;
    case v1::Value::kIntValue:
      kind = ValueKind::kInt;
      text = absl::StrCat(value.int_value());
      break;
    case v1::Value::kBoolValue:
      kind = ValueKind::kBool;
      text = value.bool_value() ? "t" : "f";
      break;
    case v1::Value::kStringValue:
    case v1::Value::KIND_NOT_SET:  // refused by ValidatePoints() / ValidateBatch() before we get here
      text = value.string_value();
      break;
  }
  return {seq, device_id, key, ts, static_cast<int>(kind), std::move(text)};
}

const std::vector<std::string>& StagingColumns() {
  static const std::vector<std::string> kColumns = {"seq", "device_id", "key", "ts", "kind", "v"};
  return kColumns;
}

// Whether two readings share a (device, key, ts): then the last one must win, which the
// plain COPY path cannot do.
bool HasRepeatedPoint(const std::vector<const v1::EdgeReading*>& readings) {
  absl::flat_hash_set<std::tuple<std::string_view, std::string_view, std::int64_t>> seen;
  seen.reserve(readings.size());
  for (const auto* r : readings) {
    if (!seen.emplace(r->device_id(), r->key(), r->ts()).second) return true;
  }
  return false;
}

// Indexes of the newest reading of each (device, key), in ascending order; the later one
// wins a tie.
std::vector<std::size_t> NewestPerSeries(const std::vector<const v1::EdgeReading*>& readings) {
  absl::flat_hash_map<std::pair<std::string_view, std::string_view>, std::size_t> newest;
  for (std::size_t i = 0; i < readings.size(); ++i) {
    auto [it, fresh] = newest.try_emplace({readings[i]->device_id(), readings[i]->key()}, i);
    if (!fresh && readings[it->second]->ts() <= readings[i]->ts()) it->second = i;
  }
  std::vector<std::size_t> out;
  out.reserve(newest.size());
  for (const auto& [series, i] : newest) out.push_back(i);
  std::sort(out.begin(), out.end());
  return out;
}

// COPYs the readings straight into telemetry inside a savepoint; false (and nothing
// written) if one of them is already stored.
bool CopyIntoTelemetry(pqxx::dbtransaction& tx, std::string_view tenant,
                       const std::vector<const v1::EdgeReading*>& readings) {
  static const std::vector<std::string> kColumns = {"tenant_id", "device_id", "key",    "ts",
                                                    "v_double",  "v_int",     "v_bool", "v_string"};
  const std::string t(tenant);
  try {
    pqxx::subtransaction sub(tx, "edge_copy");
    {
      pqxx::stream_to copy(sub, "telemetry", kColumns);
      constexpr std::nullptr_t null = nullptr;
      for (const auto* r : readings) {
        const auto& v = r->value();
        switch (v.kind_case()) {
          case v1::Value::kDoubleValue:
            copy << std::make_tuple(t, r->device_id(), r->key(), r->ts(), FormatDouble(v.double_value()), null,
                                    null, null);
            break;
          case v1::Value::kIntValue:
            copy << std::make_tuple(t, r->device_id(), r->key(), r->ts(), null, v.int_value(), null, null);
            break;
          case v1::Value::kBoolValue:
            copy << std::make_tuple(t, r->device_id(), r->key(), r->ts(), null, null, v.bool_value(), null);
            break;
          case v1::Value::kStringValue:
          case v1::Value::KIND_NOT_SET:  // refused by ValidateBatch() before we get here
            copy << std::make_tuple(t, r->device_id(), r->key(), r->ts(), null, null, null, v.string_value());
            break;
        }
      }
      copy.complete();
    }
    sub.commit();
    return true;
  } catch (const pqxx::unique_violation&) {
    return false;
  }
}

const char* NullableParam(const std::optional<std::string>& s) { return s ? s->c_str() : nullptr; }

class PostgresDatabase final : public Database, public DeviceStore, public EdgeStore, public TelemetryStore {
 public:
  PostgresDatabase(std::unique_ptr<PgPool> pool, Clock clock) : pool_(std::move(pool)), clock_(std::move(clock)) {}

  static absl::StatusOr<std::unique_ptr<Database>> Open(const DatabaseOptions& options) {
    auto pool = PgPool::Create(options.url, options.pool_size);
    if (!pool.ok()) return pool.status();
    auto db = std::make_unique<PostgresDatabase>(*std::move(pool), options.clock);
    if (auto s = db->Migrate(); !s.ok()) return s;
    if (auto s = db->PrepareInitialPartitions(); !s.ok()) return s;
    return std::unique_ptr<Database>(std::move(db));
  }

  DeviceStore& Devices() override { return *this; }
  EdgeStore& Edges() override { return *this; }
  TelemetryStore& Telemetry() override { return *this; }
  std::string_view Backend() const override { return "postgresql"; }

  absl::Status Ping() override {
    return Run([&](PgPool::Lease& lease) -> absl::Status {
      pqxx::nontransaction tx(lease.conn());
      tx.exec(Sql(kPing));
      return absl::OkStatus();
    });
  }

  // ---- devices ----

  absl::StatusOr<v1::Device> CreateDevice(std::string_view tenant, const v1::Device& device) override {
    if (device.device_id().empty()) return absl::InvalidArgumentError("empty device_id");
    const std::string labels = EncodeStringMap(device.labels());
    const std::string attributes = EncodeStringMap(device.attributes());
    return NameConflict<v1::Device>(Run([&](PgPool::Lease& lease) -> absl::StatusOr<v1::Device> {
      const std::int64_t now = clock_();
      pqxx::nontransaction tx(lease.conn());
      tx.exec_params(Sql(kInsertDevice), Str(tenant), device.device_id(), device.name(), device.type(),
                     labels, attributes, device.edge_id(), now);
      return CreatedDevice(device, tenant, now);
    }), "device '" + device.device_id() + "'");
  }

  absl::StatusOr<v1::Device> GetDevice(std::string_view tenant, std::string_view device_id) override {
    return Run([&](PgPool::Lease& lease) -> absl::StatusOr<v1::Device> {
      pqxx::nontransaction tx(lease.conn());
      auto r = tx.exec_params(Sql(kSelectDevice), Str(tenant), Str(device_id));
      if (r.empty()) return NotFound("device", Str(device_id));
      return DeviceFromRow(PgRow{r[0]}, tenant);
    });
  }

  absl::StatusOr<std::vector<v1::Device>> ListDevices(std::string_view tenant,
                                                      const DeviceListQuery& query) override {
    std::optional<std::string> filter;
    if (!query.labels.empty()) {
      filter = LabelFilterJson(query.labels);
      if (!filter) return std::vector<v1::Device>{};
    }
    return Run([&](PgPool::Lease& lease) -> absl::StatusOr<std::vector<v1::Device>> {
      pqxx::nontransaction tx(lease.conn());
      auto r = tx.exec_params(Sql(kListDevices), Str(tenant), query.after_device_id, NullableParam(filter),
                              PageLimit(query.page_size));
      std::vector<v1::Device> out;
      for (const auto& row : r) {
        auto d = DeviceFromRow(PgRow{row}, tenant);
        if (!d.ok()) return d.status();
        out.push_back(*std::move(d));
      }
      return out;
    });
  }

  absl::StatusOr<v1::Device> UpdateDevice(std::string_view tenant, const v1::Device& device,
                                          const DeviceUpdate& fields) override {
    const std::string labels = EncodeStringMap(device.labels());
    const std::string attributes = EncodeStringMap(device.attributes());
    return Run([&](PgPool::Lease& lease) -> absl::StatusOr<v1::Device> {
      pqxx::nontransaction tx(lease.conn());
      auto r = tx.exec_params(Sql(kUpdateDevice), Str(tenant), device.device_id(), fields.name, device.name(),
                              fields.type, device.type(), fields.labels, labels, fields.attributes, attributes,
                              clock_());
      if (r.empty()) return NotFound("device", device.device_id());
      return DeviceFromRow(PgRow{r[0]}, tenant);
    });
  }

  absl::Status DeleteDevice(std::string_view tenant, std::string_view device_id) override {
    return Run([&](PgPool::Lease& lease) -> absl::Status {
      pqxx::work tx(lease.conn());
      if (tx.exec_params(Sql(kDeleteDevice), Str(tenant), Str(device_id)).empty()) {
        return NotFound("device", Str(device_id));
      }
      tx.exec_params(Sql(kDeleteDeviceTelemetry), Str(tenant), Str(device_id));
      tx.exec_params(Sql(kDeleteDeviceLatest), Str(tenant), Str(device_id));
      tx.commit();
      return absl::OkStatus();
    });
  }

  // ---- edges ----

  absl::StatusOr<v1::Edge> CreateEdge(std::string_view tenant, const v1::Edge& edge) override {
    if (edge.edge_id().empty()) return absl::InvalidArgumentError("empty edge_id");
    const std::string labels = EncodeStringMap(edge.labels());
    return NameConflict<v1::Edge>(Run([&](PgPool::Lease& lease) -> absl::StatusOr<v1::Edge> {
      const std::int64_t now = clock_();
      pqxx::nontransaction tx(lease.conn());
      tx.exec_params(Sql(kInsertEdge), Str(tenant), edge.edge_id(), edge.name(), labels, now);
      return CreatedEdge(edge, tenant, now);
    }), "edge '" + edge.edge_id() + "'");
  }

  absl::StatusOr<v1::Edge> GetEdge(std::string_view tenant, std::string_view edge_id) override {
    return Run([&](PgPool::Lease& lease) -> absl::StatusOr<v1::Edge> {
      pqxx::nontransaction tx(lease.conn());
      auto r = tx.exec_params(Sql(kSelectEdge), Str(tenant), Str(edge_id));
      if (r.empty()) return NotFound("edge", Str(edge_id));
      return EdgeFromRow(PgRow{r[0]}, tenant);
    });
  }

  absl::StatusOr<std::vector<v1::Edge>> ListEdges(std::string_view tenant, int page_size,
                                                  std::string_view after_edge_id) override {
    return Run([&](PgPool::Lease& lease) -> absl::StatusOr<std::vector<v1::Edge>> {
      pqxx::nontransaction tx(lease.conn());
      auto r = tx.exec_params(Sql(kListEdges), Str(tenant), Str(after_edge_id), PageLimit(page_size));
      std::vector<v1::Edge> out;
      for (const auto& row : r) {
        auto e = EdgeFromRow(PgRow{row}, tenant);
        if (!e.ok()) return e.status();
        out.push_back(*std::move(e));
      }
      return out;
    });
  }

  absl::StatusOr<EdgeSession> TouchEdge(std::string_view tenant, std::string_view edge_id,
                                        std::int64_t now_ms) override {
    if (edge_id.empty()) return absl::InvalidArgumentError("empty edge_id");
    return Run([&](PgPool::Lease& lease) -> absl::StatusOr<EdgeSession> {
      pqxx::nontransaction tx(lease.conn());
      auto row = tx.exec_params1(Sql(kTouchEdge), Str(tenant), Str(edge_id), now_ms);
      return EdgeSession{static_cast<std::uint64_t>(row[0].as<std::int64_t>()),
                         static_cast<std::uint64_t>(row[1].as<std::int64_t>())};
    });
  }

  // ---- telemetry ----

  absl::Status Write(std::string_view tenant, std::string_view device_id, const std::vector<Point>& points) override {
    if (auto s = ValidatePoints(points); !s.ok()) return s;
    std::set<std::int64_t> days;
    std::int64_t max_ts = 0;
    for (const auto& p : points) {
      days.insert(DayOf(p.ts));
      max_ts = std::max(max_ts, p.ts);
    }
    const std::string device(device_id);
    return Run([&](PgPool::Lease& lease) -> absl::Status {
      EnsurePartitions(lease.conn(), days);
      pqxx::work tx(lease.conn());
      if (tx.exec_params(Sql(kTouchDevice), Str(tenant), device, max_ts).empty()) {
        return NotFound("device", Str(device_id));
      }
      bool staging_created = false;
      if (!points.empty()) {
        staging_created = PrepareStaging(lease.session(), tx);
        {
          pqxx::stream_to copy(tx, Str(kStagingTable), StagingColumns());
          std::int64_t seq = 0;
          for (const auto& p : points) copy << ToStagingRow(seq++, device, p.key, p.ts, p.value);
          copy.complete();
        }
        tx.exec_params(Sql(kInsertTelemetryFromStaging), Str(tenant));
        tx.exec_params(Sql(kUpsertLatestFromStaging), Str(tenant));
      }
      tx.commit();
      if (staging_created) lease.session().staging_backend_pid = lease.conn().backendpid();
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::vector<v1::Reading>> Query(std::string_view tenant, const TelemetryQuery& q) override {
    std::optional<std::string> keys;
    if (!q.keys.empty()) keys = EncodePgTextArray(q.keys);
    return Run([&](PgPool::Lease& lease) -> absl::StatusOr<std::vector<v1::Reading>> {
      pqxx::nontransaction tx(lease.conn());
      auto r = tx.exec_params(Sql(q.descending ? kQueryDesc : kQueryAsc), Str(tenant), q.device_id, q.start,
                              q.end == 0 ? std::numeric_limits<std::int64_t>::max() : q.end, NullableParam(keys),
                              q.after.has_value(), q.after ? q.after->ts : 0, q.after ? q.after->key : std::string(),
                              static_cast<std::int64_t>(std::max(q.limit, 0)) + 1);
      std::vector<v1::Reading> out;
      out.reserve(r.size());
      for (const auto& row : r) out.push_back(ReadingFromRow(PgRow{row}, q.device_id));
      return out;
    });
  }

  absl::StatusOr<std::vector<v1::Reading>> Latest(std::string_view tenant, std::string_view device_id,
                                                  const std::vector<std::string>& keys) override {
    std::optional<std::string> key_array;
    if (!keys.empty()) key_array = EncodePgTextArray(keys);
    return Run([&](PgPool::Lease& lease) -> absl::StatusOr<std::vector<v1::Reading>> {
      pqxx::nontransaction tx(lease.conn());
      auto r = tx.exec_params(Sql(kLatest), Str(tenant), Str(device_id), NullableParam(key_array));
      std::vector<v1::Reading> out;
      for (const auto& row : r) out.push_back(ReadingFromRow(PgRow{row}, device_id));
      return out;
    });
  }

  absl::StatusOr<std::vector<v1::AggregateSeries>> Aggregate(std::string_view tenant,
                                                             const AggregateQuery& q) override {
    if (q.keys.empty()) return absl::InvalidArgumentError("aggregate needs at least one key");
    if (q.interval <= 0) return absl::InvalidArgumentError("aggregate interval must be positive");
    if (q.end <= q.start) return absl::InvalidArgumentError("aggregate end must be after start");
    const std::string keys = EncodePgTextArray(q.keys);
    return Run([&](PgPool::Lease& lease) -> absl::StatusOr<std::vector<v1::AggregateSeries>> {
      pqxx::nontransaction tx(lease.conn());
      auto r = tx.exec_params(Sql(kAggregate), Str(tenant), q.device_id, q.start, q.end, q.interval, keys);
      std::map<std::string, std::vector<v1::Bucket>> by_key;
      for (const auto& row : r) {
        v1::Bucket b;
        b.set_ts(row[1].as<std::int64_t>());
        b.set_count(row[6].as<std::int64_t>());
        switch (q.function) {
          case v1::AGGREGATION_FUNCTION_MIN: b.set_value(row[3].as<double>()); break;
          case v1::AGGREGATION_FUNCTION_MAX: b.set_value(row[4].as<double>()); break;
          case v1::AGGREGATION_FUNCTION_SUM: b.set_value(row[5].as<double>()); break;
          case v1::AGGREGATION_FUNCTION_COUNT: b.set_value(static_cast<double>(b.count())); break;
          default: b.set_value(row[2].as<double>()); break;  // AVG, and UNSPECIFIED as AVG
        }
        by_key[row[0].as<std::string>()].push_back(std::move(b));
      }
      return SeriesInKeyOrder(q.keys, by_key);
    });
  }

  absl::StatusOr<std::vector<EdgeBatchResult>> ApplyEdgeBatches(std::string_view tenant, std::string_view edge_id,
                                                                std::span<const v1::TelemetryBatch* const> batches,
                                                                std::int64_t now_ms,
                                                                std::uint64_t session_epoch) override {
    if (edge_id.empty()) return absl::InvalidArgumentError("empty edge_id");
    std::set<std::int64_t> days;
    for (const auto* batch : batches) {
      if (auto s = ValidateBatch(*batch); !s.ok()) return s;
      for (const auto& r : batch->readings()) {
        days.insert(DayOf(r.ts()));
      }
    }
    return Run([&](PgPool::Lease& lease) -> absl::StatusOr<std::vector<EdgeBatchResult>> {
      // Partitions cannot be made inside the batch's transaction, so they are made before it.
      // When some day has none yet, the edge's mark and epoch are read first (the mark only
      // grows): a fenced-off session or a resent batch then makes no partitions.
      if (HasUnknownDay(days)) {
        pqxx::result edge;
        {
          pqxx::nontransaction peek(lease.conn());  // closed before EnsurePartitions opens its own
          edge = peek.exec_params(Sql(kPeekEdge), Str(tenant), Str(edge_id));
        }
        std::uint64_t mark = 0;
        if (!edge.empty()) {
          mark = static_cast<std::uint64_t>(edge[0][0].as<std::int64_t>());
          if (auto epoch = static_cast<std::uint64_t>(edge[0][1].as<std::int64_t>()); epoch != session_epoch) {
            return SupersededError(edge_id, session_epoch, epoch);
          }
        }
        std::set<std::int64_t> fresh_days;
        for (const auto* batch : batches) {
          for (const auto& r : batch->readings()) {
            if (r.seq() > mark) fresh_days.insert(DayOf(r.ts()));
          }
        }
        EnsurePartitions(lease.conn(), fresh_days);
      }
      pqxx::work tx(lease.conn());
      tx.exec_params(Sql(kEnsureEdge), Str(tenant), Str(edge_id), now_ms);
      const auto edge = tx.exec_params1(Sql(kLockEdge), Str(tenant), Str(edge_id));
      auto mark = static_cast<std::uint64_t>(edge[0].as<std::int64_t>());
      if (auto epoch = static_cast<std::uint64_t>(edge[1].as<std::int64_t>()); epoch != session_epoch) {
        return SupersededError(edge_id, session_epoch, epoch);
      }

      std::vector<EdgeBatchResult> results;
      std::vector<const v1::EdgeReading*> fresh;  // above the mark, in seq order
      for (const auto* batch : batches) {
        EdgeBatchResult result;
        for (const auto& r : batch->readings()) {
          if (r.seq() <= mark) continue;
          fresh.push_back(&r);
          ++result.written;
        }
        mark = std::max(mark, batch->last_seq());
        result.high_water_mark = mark;
        results.push_back(result);
      }
      bool staging_created = false;
      if (!fresh.empty()) {
        staging_created = PrepareStaging(lease.session(), tx);
        // Fast path: new readings from an edge rarely touch a stored (device, key, ts), so
        // they go straight into telemetry with COPY; a collision rolls that back and the
        // batch takes the last-write-wins path through the staging table instead.
        const bool copied = !HasRepeatedPoint(fresh) && CopyIntoTelemetry(tx, tenant, fresh);
        {
          // After the fast path, the newest reading of each series is all that the device
          // and latest-value statements need.
          pqxx::stream_to copy(tx, Str(kStagingTable), StagingColumns());
          auto stage = [&](std::size_t i) {
            const auto& r = *fresh[i];
            copy << ToStagingRow(static_cast<std::int64_t>(i), r.device_id(), r.key(), r.ts(), r.value());
          };
          if (copied) {
            for (std::size_t i : NewestPerSeries(fresh)) stage(i);
          } else {
            for (std::size_t i = 0; i < fresh.size(); ++i) stage(i);
          }
          copy.complete();
        }
        tx.exec_params(Sql(kAutoCreateDevicesFromStaging), Str(tenant), Str(edge_id), now_ms);
        tx.exec_params(Sql(kLockDevicesFromStaging), Str(tenant));
        tx.exec_params(Sql(kTouchDevicesFromStaging), Str(tenant), Str(edge_id));
        if (!copied) tx.exec_params(Sql(kInsertTelemetryFromStaging), Str(tenant));
        tx.exec_params(Sql(kUpsertLatestFromStaging), Str(tenant));
      }
      tx.exec_params(Sql(kAdvanceEdge), Str(tenant), Str(edge_id), static_cast<std::int64_t>(mark), now_ms);
      tx.commit();
      if (staging_created) lease.session().staging_backend_pid = lease.conn().backendpid();
      return results;
    });
  }

 private:
  // Creates the session's staging table if this backend does not have it yet; true if it
  // did (the caller records that after the commit, since a rollback undoes the creation).
  static bool PrepareStaging(PgSession& session, pqxx::transaction_base& tx) {
    if (session.staging_backend_pid == session.conn->backendpid()) return false;
    tx.exec(Sql(kCreateStaging));
    return true;
  }

  // Runs `f` on a pooled connection, turning libpqxx exceptions into statuses. A connection
  // failure is retried once on a fresh connection (nothing was committed: a failed commit
  // throws in_doubt_error instead); deadlocks and serialization failures are retried too.
  template <typename F>
  auto Run(F&& f) -> decltype(f(std::declval<PgPool::Lease&>())) {
    absl::Status last;
    for (int attempt = 1; attempt <= kMaxAttempts; ++attempt) {
      auto lease = pool_->Acquire();
      if (!lease.ok()) return lease.status();
      try {
        return f(*lease);
      } catch (const pqxx::broken_connection& e) {
        lease->MarkBroken();
        pool_->DropIdle();  // the others most likely went down with it
        last = UnavailableDbError("PostgreSQL", absl::StrCat("connection lost: ", e.what()));
        if (attempt >= 2) break;
      } catch (const pqxx::in_doubt_error& e) {
        lease->MarkBroken();
        return UnavailableDbError("PostgreSQL", absl::StrCat("commit outcome unknown: ", e.what()));
      } catch (const pqxx::transaction_rollback& e) {  // deadlock, serialization failure
        last = UnavailableDbError("PostgreSQL", absl::StrCat("transaction rolled back (attempt ", attempt, "): ", e.what()));
      } catch (const pqxx::sql_error& e) {
        if (e.sqlstate() == "23514" && attempt < kMaxAttempts) {
          // "no partition of relation found for row": a partition we knew of was dropped
          // (retention). Forget what we know; the retry recreates what it needs.
          ForgetPartitions();
          last = SqlErrorStatus(e);
          continue;
        }
        if (!IsConnectionState(e.sqlstate())) return SqlErrorStatus(e);
        lease->MarkBroken();
        pool_->DropIdle();
        last = SqlErrorStatus(e);
        if (attempt >= 2) break;
      } catch (const std::exception& e) {
        return InternalDbError("PostgreSQL", e.what());
      }
    }
    return last;
  }

  absl::Status Migrate() {
    return Run([&](PgPool::Lease& lease) -> absl::Status {
      pqxx::connection& c = lease.conn();
      {
        // Session lock: a second process starting now waits here until we are done.
        pqxx::nontransaction tx(c);
        tx.exec_params(Sql(kLockMigrations), kMigrationLockKey);
      }
      try {
        {
          pqxx::work tx(c);
          tx.exec(Sql(kCreateMigrationsTable));
          tx.commit();
        }
        for (const Migration& m : PostgresMigrations()) {
          pqxx::work tx(c);
          if (!tx.exec_params(Sql(kSelectMigration), m.version).empty()) {
            tx.commit();
            continue;
          }
          tx.exec(Str(m.sql));
          tx.exec_params(Sql(kInsertMigration), m.version, Str(m.name), clock_());
          tx.commit();
          spdlog::info("PostgreSQL: applied migration {} ({})", m.version, m.name);
        }
      } catch (...) {
        Unlock(c);
        throw;
      }
      Unlock(c);
      return absl::OkStatus();
    });
  }

  static void Unlock(pqxx::connection& c) {
    try {
      pqxx::nontransaction tx(c);
      tx.exec_params(Sql(kUnlockMigrations), kMigrationLockKey);
    } catch (const std::exception& e) {
      // Session locks die with the session; a broken one releases it anyway.
      spdlog::warn("PostgreSQL: could not release the migration lock: {}", e.what());
    }
  }

  absl::StatusOr<RetentionResult> DropTelemetryBefore(std::int64_t cutoff_ms) override {
    // Whole days only: a partition goes when its last millisecond is before the cutoff.
    return Run([&](PgPool::Lease& lease) -> absl::StatusOr<RetentionResult> {
      std::vector<std::pair<std::int64_t, std::string>> old;
      {
        pqxx::nontransaction tx(lease.conn());
        for (const auto& row : tx.exec(Sql(kListPartitions))) {
          auto name = row[0].as<std::string>();
          if (auto day = DayOfPartition(name); day && (*day + 1) * kDayMs <= cutoff_ms) old.emplace_back(*day, name);
        }
      }
      RetentionResult result;
      for (const auto& [day, name] : old) {
        {
          std::lock_guard lock(partitions_mu_);
          known_days_.erase(day);
        }
        pqxx::nontransaction tx(lease.conn());
        tx.exec(absl::Substitute(Sql(kDropTable), name));
        ++result.partitions_dropped;
      }
      for (;;) {
        pqxx::nontransaction tx(lease.conn());
        const auto n = tx.exec_params(Sql(kDeleteDefaultBefore), cutoff_ms, kDefaultDeleteChunk).affected_rows();
        result.rows_deleted += n;
        if (static_cast<std::int64_t>(n) < kDefaultDeleteChunk) break;
      }
      return result;
    });
  }

  // Learns the partitions that exist and creates those for today and the next few days.
  absl::Status PrepareInitialPartitions() {
    return Run([&](PgPool::Lease& lease) -> absl::Status {
      {
        pqxx::nontransaction tx(lease.conn());
        auto r = tx.exec(Sql(kListPartitions));
        std::lock_guard lock(partitions_mu_);
        for (const auto& row : r) {
          if (auto day = DayOfPartition(row[0].as<std::string>())) known_days_.insert(*day);
        }
      }
      std::set<std::int64_t> days;
      const std::int64_t today = DayOf(clock_());
      for (int i = 0; i <= kPartitionDaysAhead; ++i) days.insert(today + i);
      EnsurePartitions(lease.conn(), days);
      return absl::OkStatus();
    });
  }

  // The days of `days` that get a partition of their own (the window around now; the others'
  // rows live in telemetry_default) and do not have one yet, as far as this process knows.
  std::vector<std::int64_t> MissingPartitions(const std::set<std::int64_t>& days) {
    const std::int64_t today = DayOf(clock_());
    std::vector<std::int64_t> missing;
    std::lock_guard lock(partitions_mu_);
    for (auto d : days) {
      const bool in_window = d >= today - kPartitionDaysBehind && d <= today + kPartitionDaysAhead;
      if (in_window && !known_days_.contains(d)) missing.push_back(d);
    }
    return missing;
  }

  bool HasUnknownDay(const std::set<std::int64_t>& days) { return !MissingPartitions(days).empty(); }

  // Makes sure a partition exists for every day of the window in `days`, each created in its
  // own short autocommit statement. Throws libpqxx exceptions (Run maps them).
  void EnsurePartitions(pqxx::connection& c, const std::set<std::int64_t>& days) {
    const std::vector<std::int64_t> missing = MissingPartitions(days);
    for (auto day : missing) {
      CreatePartition(c, day);
      std::lock_guard lock(partitions_mu_);
      known_days_.insert(day);
    }
  }

  void ForgetPartitions() {
    std::lock_guard lock(partitions_mu_);
    known_days_.clear();
  }

  static void CreatePartition(pqxx::connection& c, std::int64_t day) {
    const std::string sql = absl::Substitute(Sql(kCreatePartition), PartitionName(day), day * kDayMs, (day + 1) * kDayMs);
    for (int attempt = 1;; ++attempt) {
      try {
        pqxx::nontransaction tx(c);
        tx.exec(sql);
        return;
      } catch (const pqxx::sql_error& e) {
        // Another session created it between our IF NOT EXISTS check and our insert into
        // the catalog (42P07, or 23505 on the catalog's unique index), or a partition with
        // another name already covers the range (42P17).
        const std::string& state = e.sqlstate();
        if (state == "42P07" || state == "23505" || state == "42P17") return;
        // 23514: the default partition holds rows of this day; they move in with it.
        if (state == "23514") {
          try {
            MovePartitionOutOfDefault(c, day);
          } catch (const pqxx::sql_error& moved) {
            // A writer that does not take the move lock (CREATE ... PARTITION OF above) got
            // there first: the partition exists, which is all we wanted.
            if (moved.sqlstate() != "42P07" && moved.sqlstate() != "42P17") throw;
          }
          return;
        }
        throw;
      } catch (const pqxx::transaction_rollback& e) {
        if (attempt >= kMaxAttempts) throw;
        spdlog::warn("PostgreSQL: retrying partition creation: {}", e.what());
      }
    }
  }

  std::unique_ptr<PgPool> pool_;
  const Clock clock_;
  // Makes `day`'s partition from the rows the default partition holds for it, in one
  // transaction: create the table, move the rows, attach it.
  static void MovePartitionOutOfDefault(pqxx::connection& c, std::int64_t day) {
    const std::string name = PartitionName(day);
    const std::int64_t lo = day * kDayMs, hi = (day + 1) * kDayMs;
    pqxx::work tx(c);
    tx.exec_params(Sql(kLockPartitionMoves), kPartitionMoveLockKey);
    // Another process (or thread) may have made it while we waited for the lock.
    if (tx.exec_params(Sql(kPartitionExists), name)[0][0].as<bool>()) return;
    tx.exec(Sql(kLockParentForMove));
    tx.exec(Sql(kLockDefaultPartition));
    tx.exec(absl::Substitute(Sql(kCreateDayTable), name));
    const auto moved = tx.exec(absl::Substitute(Sql(kMoveFromDefault), name, lo, hi)).affected_rows();
    tx.exec(absl::Substitute(Sql(kAttachPartition), name, lo, hi));
    tx.commit();
    spdlog::info("PostgreSQL: made partition {}, with {} readings moved out of telemetry_default", name, moved);
  }

  std::mutex partitions_mu_;
  std::set<std::int64_t> known_days_;  // guarded by partitions_mu_: days with a partition
};

}  // namespace

absl::StatusOr<std::unique_ptr<Database>> OpenPostgresDatabase(const DatabaseOptions& options) {
  return PostgresDatabase::Open(options);
}

}  // namespace strata::storage
