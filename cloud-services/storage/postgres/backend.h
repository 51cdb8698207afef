// The PostgreSQL backend's shared half (libpqxx 6.4): the connection pool, the day
// partitions, and the way every store runs an operation.
//
// Every operation leases one connection from a bounded pool (PgPool) and runs one
// transaction on it (Context::Run). The stores (devices.cpp, edges.cpp, telemetry.cpp) share
// one Context; database.cpp opens it, migrates, and owns them.
//
// Lock order inside write transactions, to keep concurrent writers free of deadlocks: the
// edge row, then device rows in device_id order, then telemetry and telemetry_latest rows,
// and the edge's edge_config row last (a device trigger raises its revision; a registry write
// locks the device row, then edge_config). One race is left to PostgreSQL's deadlock
// detection and Context::Run's retry: the same new device created by the registry and by an
// edge batch that creates other new devices too, at the same moment.
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <absl/status/status.h>
#include <absl/strings/str_cat.h>
#include <pqxx/pqxx>

#include "postgres/partitions.h"
#include "postgres/pg_pool.h"
#include "storage/codec.h"
#include "storage/sql_tx.h"
#include "storage/store.h"
#include "strata/clock.h"

namespace strata::storage::postgres {

inline constexpr int kMaxAttempts = 3;

// Debian's abseil has its own string_view type, and libpqxx wants std::string: hand both
// std::strings.
inline std::string Str(std::string_view s) { return std::string(s); }

// Connection-level failures: the session is gone and the pool must not hand it out again.
bool IsConnectionState(const std::string& state);

// A PostgreSQL error in the API's words (the detail goes to the log).
absl::Status SqlErrorStatus(const pqxx::sql_error& e);

inline const char* NullableParam(const std::optional<std::string>& s) { return s ? s->c_str() : nullptr; }

// A libpqxx row as storage/rows.h reads it.
struct PgRow {
  const pqxx::row& row;
  bool IsNull(int i) const { return row[i].is_null(); }
  std::string Text(int i) const { return row[i].as<std::string>(); }
  std::int64_t Int(int i) const { return row[i].as<std::int64_t>(); }
  double Double(int i) const { return row[i].as<double>(); }
  bool Bool(int i) const { return row[i].as<bool>(); }
};

class Context {
 public:
  Context(std::unique_ptr<PgPool> pool, Clock clock)
      : pool_(std::move(pool)), clock_(clock), partitions_(std::move(clock)) {}

  std::int64_t Now() const { return clock_(); }
  Partitions& partitions() { return partitions_; }

  // Runs `f` on a pooled connection, turning libpqxx exceptions into statuses. A connection
  // failure is retried once on a fresh connection (nothing was committed: a failed commit
  // throws in_doubt_error instead); deadlocks and serialization failures are retried too, and
  // a write that found a partition it knew of dropped (retention) is retried after the
  // partitions are forgotten.
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
        last = UnavailableDbError("PostgreSQL",
                                  absl::StrCat("transaction rolled back (attempt ", attempt, "): ", e.what()));
      } catch (const pqxx::sql_error& e) {
        if (e.sqlstate() == "23514" && attempt < kMaxAttempts) {
          // "no partition of relation found for row": a partition we knew of was dropped.
          partitions_.Forget();
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

 private:
  const std::unique_ptr<PgPool> pool_;
  const Clock clock_;
  Partitions partitions_;
};

std::unique_ptr<DeviceStore> NewDeviceStore(Context& ctx);
std::unique_ptr<EdgeStore> NewEdgeStore(Context& ctx);
std::unique_ptr<TelemetryStore> NewTelemetryStore(Context& ctx);
// storage/sql_tx.h on this backend (sql_tx.cpp).
std::unique_ptr<SqlRunner> NewSqlRunner(Context& ctx);

}  // namespace strata::storage::postgres
