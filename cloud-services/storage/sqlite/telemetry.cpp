// SQLite: the telemetry store. Points are upserted one statement each (prepared once per
// write), in batch order, so the last write of a (device, key, ts) wins.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "rows.h"
#include "sql.h"
#include "sqlite/backend.h"

namespace strata::storage::sqlitedb {
namespace {

constexpr std::string_view kTouchDeviceFromEdge =
    "UPDATE devices SET last_seen_at = max(last_seen_at, ?3),"
    " edge_id = CASE WHEN edge_id = '' THEN ?4 ELSE edge_id END"
    " WHERE tenant_id = ?1 AND device_id = ?2";
using sql::kAutoCreateDevice;

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

std::optional<std::string> KeysParam(const std::vector<std::string>& keys) {
  if (keys.empty()) return std::nullopt;
  return EncodeJsonArray(keys);
}

absl::Status UpsertPoint(sqlite::Statement& upsert, sqlite::Statement& latest, std::string_view tenant,
                         std::string_view device_id, std::string_view key, std::int64_t ts, const v1::Value& value) {
  for (sqlite::Statement* s : {&upsert, &latest}) {
    s->Reset();
    s->Bind(1, tenant).Bind(2, device_id).Bind(3, key).Bind(4, ts);
    STRATA_RETURN_IF_ERROR(BindValue(*s, 5, value).Run());
  }
  return absl::OkStatus();
}

class Telemetry final : public TelemetryStore {
 public:
  explicit Telemetry(Context& ctx) : ctx_(ctx) {}

  absl::Status Write(std::string_view tenant, std::string_view device_id, const std::vector<Point>& points) override {
    if (auto s = ValidatePoints(points); !s.ok()) return s;
    return ctx_.Run([&](sqlite::Connection& db) -> absl::Status {
      STRATA_ASSIGN_OR_RETURN(auto tx, sqlite::Transaction::Begin(db));
      std::int64_t max_ts = std::numeric_limits<std::int64_t>::min();
      for (const auto& p : points) max_ts = std::max(max_ts, p.ts);
      STRATA_RETURN_IF_ERROR(Exec(db, sql::kTouchDevice, tenant, device_id, points.empty() ? std::int64_t{0} : max_ts));
      if (db.Changes() == 0) return NotFound("device", Str(device_id));
      STRATA_ASSIGN_OR_RETURN(auto upsert, db.Prepare(kUpsertTelemetry));
      STRATA_ASSIGN_OR_RETURN(auto latest, db.Prepare(kUpsertLatest));
      // In batch order, so a later point of the same (key, ts) wins.
      for (const auto& p : points) {
        STRATA_RETURN_IF_ERROR(UpsertPoint(upsert, latest, tenant, device_id, p.key, p.ts, p.value));
      }
      return tx.Commit();
    });
  }

  absl::StatusOr<std::vector<v1::Reading>> Query(std::string_view tenant, const TelemetryQuery& q) override {
    return ctx_.Run([&](sqlite::Connection& db) -> absl::StatusOr<std::vector<v1::Reading>> {
      STRATA_ASSIGN_OR_RETURN(auto s, db.Prepare(q.descending ? kQueryDesc : kQueryAsc));
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
    return ctx_.Run([&](sqlite::Connection& db) -> absl::StatusOr<std::vector<v1::Reading>> {
      STRATA_ASSIGN_OR_RETURN(auto s, db.Prepare(kLatest));
      s.Bind(1, tenant).Bind(2, device_id).Bind(3, KeysParam(keys));
      std::vector<v1::Reading> out;
      STRATA_RETURN_IF_ERROR(s.ForEachRow([&] { out.push_back(ReadingFromRow(SqliteRow{s}, device_id)); }));
      return out;
    });
  }

  absl::StatusOr<std::vector<v1::AggregateSeries>> Aggregate(std::string_view tenant,
                                                             const AggregateQuery& q) override {
    STRATA_RETURN_IF_ERROR(CheckAggregateQuery(q));
    return ctx_.Run([&](sqlite::Connection& db) -> absl::StatusOr<std::vector<v1::AggregateSeries>> {
      STRATA_ASSIGN_OR_RETURN(auto s, db.Prepare(kAggregate));
      s.Bind(1, tenant).Bind(2, q.device_id).Bind(3, q.start).Bind(4, q.end).Bind(5, q.interval)
          .Bind(6, EncodeJsonArray(q.keys));
      std::map<std::string, std::vector<v1::Bucket>> by_key;
      STRATA_RETURN_IF_ERROR(s.ForEachRow([&] { by_key[s.Text(0)].push_back(BucketFromRow(SqliteRow{s}, q.function)); }));
      return SeriesInKeyOrder(q.keys, by_key);
    });
  }

  absl::StatusOr<std::vector<EdgeBatchResult>> ApplyEdgeBatches(std::string_view tenant, std::string_view edge_id,
                                                                std::span<const v1::TelemetryBatch* const> batches,
                                                                std::int64_t now_ms,
                                                                std::uint64_t session_epoch) override {
    if (auto s = CheckEdgeBatches(edge_id, batches); !s.ok()) return s;
    return ctx_.Run([&](sqlite::Connection& db) -> absl::StatusOr<std::vector<EdgeBatchResult>> {
      // BEGIN IMMEDIATE: the mark cannot move under us.
      STRATA_ASSIGN_OR_RETURN(auto tx, sqlite::Transaction::Begin(db));
      STRATA_RETURN_IF_ERROR(Exec(db, sql::kEnsureEdge, tenant, edge_id, now_ms));
      STRATA_ASSIGN_OR_RETURN(auto mark_stmt, db.Prepare(sql::kSelectEdgeMark));
      STRATA_ASSIGN_OR_RETURN(bool found, mark_stmt.Bind(1, tenant).Bind(2, edge_id).Step());
      if (!found) return absl::InternalError("edge row vanished inside its transaction");
      auto mark = static_cast<std::uint64_t>(mark_stmt.Int(0));
      const auto epoch = static_cast<std::uint64_t>(mark_stmt.Int(1));
      mark_stmt.Reset();
      if (epoch != session_epoch) return SupersededError(edge_id, session_epoch, epoch);

      std::vector<EdgeBatchResult> results;
      std::map<std::string, std::int64_t> devices;  // device -> max ts written
      STRATA_ASSIGN_OR_RETURN(auto create, db.Prepare(kAutoCreateDevice));
      STRATA_ASSIGN_OR_RETURN(auto upsert, db.Prepare(kUpsertTelemetry));
      STRATA_ASSIGN_OR_RETURN(auto latest, db.Prepare(kUpsertLatest));
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
      STRATA_ASSIGN_OR_RETURN(auto touch, db.Prepare(kTouchDeviceFromEdge));
      for (const auto& [device_id, ts] : devices) {
        touch.Reset();
        STRATA_RETURN_IF_ERROR(touch.Bind(1, tenant).Bind(2, device_id).Bind(3, ts).Bind(4, edge_id).Run());
      }
      STRATA_ASSIGN_OR_RETURN(auto advance, db.Prepare(sql::kAdvanceEdge));
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
      auto n = ctx_.Run([&](sqlite::Connection& db) -> absl::StatusOr<std::uint64_t> {
        STRATA_ASSIGN_OR_RETURN(auto tx, sqlite::Transaction::Begin(db));
        STRATA_RETURN_IF_ERROR(Exec(db, kDeleteTelemetryBefore, cutoff_ms));
        const auto deleted = static_cast<std::uint64_t>(db.Changes());
        STRATA_RETURN_IF_ERROR(tx.Commit());
        return deleted;
      });
      if (!n.ok()) return n.status();
      result.rows_deleted += *n;
      if (*n < kRetentionChunk) return result;
    }
  }

 private:
  Context& ctx_;
};

}  // namespace

std::unique_ptr<TelemetryStore> NewTelemetryStore(Context& ctx) { return std::make_unique<Telemetry>(ctx); }

}  // namespace strata::storage::sqlitedb
