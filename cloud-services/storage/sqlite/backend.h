// The SQLite backend's shared half: the one connection and the way every store uses it.
//
// One connection in WAL mode with a busy timeout, guarded by one mutex: SQLite runs one
// writer at a time anyway, and a single connection keeps transactions simple. Writes use
// BEGIN IMMEDIATE so a second process on the same file waits (busy timeout) instead of
// failing half-way through a transaction. The stores (devices.cpp, edges.cpp, telemetry.cpp)
// share one Context; database.cpp opens it and owns them.
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "storage/codec.h"
#include "storage/sql_tx.h"
#include "storage/store.h"
#include "strata/clock.h"
#include "strata/sqlite/sqlite.h"
#include "strata/status_macros.h"

namespace strata::storage::sqlitedb {

// Debian's abseil has its own string_view type: hand it std::strings.
inline std::string Str(std::string_view s) { return std::string(s); }

// An error of the SQLite layer (it carries SQLite's code) in the API's words, the detail in
// the log; the backend's own errors (NotFound, ...) pass through.
absl::Status InApiWords(absl::Status s);

// A SQLite row as storage/rows.h reads it.
struct SqliteRow {
  const sqlite::Statement& s;
  bool IsNull(int i) const { return s.IsNull(i); }
  std::string Text(int i) const { return s.Text(i); }
  std::int64_t Int(int i) const { return s.Int(i); }
  double Double(int i) const { return s.Double(i); }
  bool Bool(int i) const { return s.Int(i) != 0; }
};

// The four value columns (v_double, v_int, v_bool, v_string) of a telemetry row, starting at
// parameter `first`: the value's kind gets the value, the others NULL.
sqlite::Statement& BindValue(sqlite::Statement& s, int first, const v1::Value& v);

class Context {
 public:
  Context(std::unique_ptr<sqlite::Connection> db, Clock clock) : db_(std::move(db)), clock_(std::move(clock)) {}

  std::int64_t Now() const { return clock_(); }

  // Runs f(connection) holding the connection's mutex; SQLite's errors come out in the API's
  // words, exceptions (std::bad_alloc, or a bug in the protobuf/JSON code) as INTERNAL.
  template <typename F>
  auto Run(F&& f) -> decltype(f(std::declval<sqlite::Connection&>())) {
    std::lock_guard lock(mu_);
    try {
      auto result = f(*db_);
      if (!result.ok()) return InApiWords(StatusOf(result));
      return result;
    } catch (const std::exception& e) {
      return InternalDbError("SQLite", e.what());
    }
  }

 private:
  static absl::Status StatusOf(const absl::Status& s) { return s; }
  template <typename T>
  static absl::Status StatusOf(const absl::StatusOr<T>& s) { return s.status(); }

  std::mutex mu_;
  const std::unique_ptr<sqlite::Connection> db_;  // guarded by mu_ (used only inside Run)
  const Clock clock_;
};

using sqlite::Exec;

std::unique_ptr<DeviceStore> NewDeviceStore(Context& ctx);
std::unique_ptr<EdgeStore> NewEdgeStore(Context& ctx);
std::unique_ptr<TelemetryStore> NewTelemetryStore(Context& ctx);
// storage/sql_tx.h on this backend (sql_tx.cpp).
std::unique_ptr<SqlRunner> NewSqlRunner(Context& ctx);

}  // namespace strata::storage::sqlitedb
