// PostgreSQL: the telemetry store.
//
// Ingest COPYs the batch into a per-session temporary staging table and moves it into
// telemetry with one INSERT ... SELECT DISTINCT ON ... ON CONFLICT, so the last write of a
// (device, key, ts) wins even inside one batch. An edge's new readings rarely touch a stored
// (device, key, ts), so they first try a plain COPY into telemetry (rolled back to a
// savepoint on a collision).
#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include <absl/container/flat_hash_map.h>
#include <absl/container/flat_hash_set.h>

#include "postgres/backend.h"
#include "rows.h"
#include "sql.h"

namespace strata::storage::postgres {
namespace {

const std::string kTouchDevice = sql::ForPostgres(sql::kTouchDevice);
const std::string kEnsureEdge = sql::ForPostgres(sql::kEnsureEdge);
const std::string kPeekEdge = sql::ForPostgres(sql::kSelectEdgeMark);
const std::string kLockEdge = sql::ForPostgres(sql::kSelectEdgeMark) + " FOR UPDATE";
const std::string kAdvanceEdge = sql::ForPostgres(sql::kAdvanceEdge);

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
    "UPDATE devices d SET last_seen_at = GREATEST(d.last_seen_at, s.max_ts),"
    " edge_id = CASE WHEN d.edge_id = '' THEN $2 ELSE d.edge_id END"
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

// A staging row: seq, device_id, key, ts, kind, value as text.
using StagingRow = std::tuple<std::int64_t, std::string, std::string, std::int64_t, int, std::string>;

StagingRow ToStagingRow(std::int64_t seq, const std::string& device_id, const std::string& key, std::int64_t ts,
                        const v1::Value& value) {
  ValueText v = ToValueText(value);
  return {seq, device_id, key, ts, static_cast<int>(v.kind), std::move(v.text)};
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
      for (const auto* r : readings) {
        // The value's text in its kind's column, NULL (a null pointer) in the other three.
        const ValueText v = ToValueText(r->value());
        std::array<const char*, 4> columns{};
        columns[static_cast<int>(v.kind) - 1] = v.text.c_str();
        copy << std::make_tuple(std::cref(t), std::cref(r->device_id()), std::cref(r->key()), r->ts(), columns[0],
                                columns[1], columns[2], columns[3]);
      }
      copy.complete();
    }
    sub.commit();
    return true;
  } catch (const pqxx::unique_violation&) {
    return false;
  }
}

// Creates the session's staging table if this backend does not have it yet; true if it did
// (the caller records that after the commit, since a rollback undoes the creation).
bool PrepareStaging(PgSession& session, pqxx::transaction_base& tx) {
  if (session.staging_backend_pid == session.conn->backendpid()) return false;
  tx.exec(Str(kCreateStaging));
  return true;
}

class Telemetry final : public TelemetryStore {
 public:
  explicit Telemetry(Context& ctx) : ctx_(ctx) {}

  absl::Status Write(std::string_view tenant, std::string_view device_id, const std::vector<Point>& points) override {
    if (auto s = ValidatePoints(points); !s.ok()) return s;
    std::set<std::int64_t> days;
    std::int64_t max_ts = 0;
    for (const auto& p : points) {
      days.insert(DayOf(p.ts));
      max_ts = std::max(max_ts, p.ts);
    }
    const std::string device(device_id);
    return ctx_.Run([&](PgPool::Lease& lease) -> absl::Status {
      ctx_.partitions().Ensure(lease.conn(), days);
      pqxx::work tx(lease.conn());
      if (tx.exec_params(kTouchDevice, Str(tenant), device, max_ts).affected_rows() == 0) {
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
        tx.exec_params(Str(kInsertTelemetryFromStaging), Str(tenant));
        tx.exec_params(Str(kUpsertLatestFromStaging), Str(tenant));
      }
      tx.commit();
      if (staging_created) lease.session().staging_backend_pid = lease.conn().backendpid();
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::vector<v1::Reading>> Query(std::string_view tenant, const TelemetryQuery& q) override {
    std::optional<std::string> keys;
    if (!q.keys.empty()) keys = EncodePgTextArray(q.keys);
    return ctx_.Run([&](PgPool::Lease& lease) -> absl::StatusOr<std::vector<v1::Reading>> {
      pqxx::nontransaction tx(lease.conn());
      auto r = tx.exec_params(Str(q.descending ? kQueryDesc : kQueryAsc), Str(tenant), q.device_id, q.start,
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
    return ctx_.Run([&](PgPool::Lease& lease) -> absl::StatusOr<std::vector<v1::Reading>> {
      pqxx::nontransaction tx(lease.conn());
      auto r = tx.exec_params(Str(kLatest), Str(tenant), Str(device_id), NullableParam(key_array));
      std::vector<v1::Reading> out;
      for (const auto& row : r) out.push_back(ReadingFromRow(PgRow{row}, device_id));
      return out;
    });
  }

  absl::StatusOr<std::vector<v1::AggregateSeries>> Aggregate(std::string_view tenant,
                                                             const AggregateQuery& q) override {
    if (auto s = CheckAggregateQuery(q); !s.ok()) return s;
    const std::string keys = EncodePgTextArray(q.keys);
    return ctx_.Run([&](PgPool::Lease& lease) -> absl::StatusOr<std::vector<v1::AggregateSeries>> {
      pqxx::nontransaction tx(lease.conn());
      auto r = tx.exec_params(Str(kAggregate), Str(tenant), q.device_id, q.start, q.end, q.interval, keys);
      std::map<std::string, std::vector<v1::Bucket>> by_key;
      for (const auto& row : r) by_key[row[0].as<std::string>()].push_back(BucketFromRow(PgRow{row}, q.function));
      return SeriesInKeyOrder(q.keys, by_key);
    });
  }

  absl::StatusOr<std::vector<EdgeBatchResult>> ApplyEdgeBatches(std::string_view tenant, std::string_view edge_id,
                                                                std::span<const v1::TelemetryBatch* const> batches,
                                                                std::int64_t now_ms,
                                                                std::uint64_t session_epoch) override {
    if (auto s = CheckEdgeBatches(edge_id, batches); !s.ok()) return s;
    std::set<std::int64_t> days;
    for (const auto* batch : batches) {
      for (const auto& r : batch->readings()) days.insert(DayOf(r.ts()));
    }
    return ctx_.Run([&](PgPool::Lease& lease) -> absl::StatusOr<std::vector<EdgeBatchResult>> {
      // Partitions cannot be made inside the batch's transaction, so they are made before it.
      // When some day has none yet, the edge's mark and epoch are read first (the mark only
      // grows): a fenced-off session or a resent batch then makes no partitions.
      if (ctx_.partitions().HasMissing(days)) {
        pqxx::result edge;
        {
          pqxx::nontransaction peek(lease.conn());  // closed before Ensure opens its own
          edge = peek.exec_params(kPeekEdge, Str(tenant), Str(edge_id));
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
        ctx_.partitions().Ensure(lease.conn(), fresh_days);
      }
      pqxx::work tx(lease.conn());
      tx.exec_params(kEnsureEdge, Str(tenant), Str(edge_id), now_ms);
      const auto edge = tx.exec_params1(kLockEdge, Str(tenant), Str(edge_id));
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
        // The devices that exist are locked before any is created: creating one raises the
        // edge's config revision (edge_config), which must be the last lock taken (backend.h).
        tx.exec_params(Str(kLockDevicesFromStaging), Str(tenant));
        tx.exec_params(Str(kAutoCreateDevicesFromStaging), Str(tenant), Str(edge_id), now_ms);
        tx.exec_params(Str(kTouchDevicesFromStaging), Str(tenant), Str(edge_id));
        if (!copied) tx.exec_params(Str(kInsertTelemetryFromStaging), Str(tenant));
        tx.exec_params(Str(kUpsertLatestFromStaging), Str(tenant));
      }
      tx.exec_params(kAdvanceEdge, Str(tenant), Str(edge_id), static_cast<std::int64_t>(mark), now_ms);
      tx.commit();
      if (staging_created) lease.session().staging_backend_pid = lease.conn().backendpid();
      return results;
    });
  }

  absl::StatusOr<RetentionResult> DropTelemetryBefore(std::int64_t cutoff_ms) override {
    return ctx_.Run([&](PgPool::Lease& lease) -> absl::StatusOr<RetentionResult> {
      return ctx_.partitions().DropBefore(lease.conn(), cutoff_ms);
    });
  }

 private:
  Context& ctx_;
};

}  // namespace

std::unique_ptr<TelemetryStore> NewTelemetryStore(Context& ctx) { return std::make_unique<Telemetry>(ctx); }

}  // namespace strata::storage::postgres
