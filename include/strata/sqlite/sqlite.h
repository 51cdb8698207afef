// The SQLite layer that the edge buffer and the cloud's SQLite backend share: a connection
// opened with the settings both want (WAL, a busy timeout), prepared statements whose every
// error is a status, and transactions that roll back unless committed.
//
// Errors are absl::Status values: a UNIQUE or PRIMARY KEY violation is ALREADY_EXISTS; a busy
// or locked database, one that cannot be opened, a full disk or an I/O error is UNAVAILABLE;
// anything else INTERNAL. The message says what failed and SQLite's own words; SqliteCode()
// gives the extended result code back, so that a caller can tell SQLite's errors from its own
// and word them for its users.
//
// Not thread-safe: a Connection and its statements are used by one thread at a time (callers
// hold their own lock).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

namespace strata::sqlite {

// The extended SQLite result code carried by a status from this layer, or nullopt for any
// other status.
std::optional<int> SqliteCode(const absl::Status& status);

enum class Synchronous { kOff, kNormal, kFull };

struct ConnectionOptions {
  std::string path;
  // How long a statement waits for another connection's lock before failing UNAVAILABLE.
  int busy_timeout_ms = 5000;
  // WAL lets readers run while one writer writes; with it, synchronous=NORMAL loses nothing
  // on a process crash (only on power loss), FULL nothing on power loss either.
  bool wal = true;
  Synchronous synchronous = Synchronous::kNormal;
};

class Statement;

class Connection {
 public:
  // Opens (creating it if needed) the database at options.path. UNAVAILABLE when it cannot.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const ConnectionOptions& options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs one or more statements that return no rows (DDL, PRAGMA, BEGIN ...).
  absl::Status Exec(std::string_view sql);
  absl::StatusOr<Statement> Prepare(std::string_view sql);

  // Rows changed by the last INSERT, UPDATE or DELETE.
  std::int64_t Changes() const;
  const std::string& path() const { return path_; }

 private:
  Connection(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}

  sqlite3* db_;
  std::string path_;
};

// A prepared statement. Binds are chained; a bind that fails (a bug: a wrong index, or out of
// memory) is kept and returned by the next Step or Run, so a chain needs one check.
class Statement {
 public:
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  ~Statement();

  // Parameters are numbered from 1, as in the SQL (?1, ?2, ...).
  Statement& Bind(int i, std::int64_t v);
  Statement& Bind(int i, int v) { return Bind(i, static_cast<std::int64_t>(v)); }
  Statement& Bind(int i, std::uint64_t v) = delete;  // say how it fits in an int64
  Statement& Bind(int i, bool v) { return Bind(i, static_cast<std::int64_t>(v ? 1 : 0)); }
  Statement& Bind(int i, double v);
  Statement& Bind(int i, std::string_view v);
  Statement& Bind(int i, const std::string& v) { return Bind(i, std::string_view(v)); }
  Statement& Bind(int i, const char* v) = delete;  // say std::string_view explicitly
  Statement& Bind(int i, const std::optional<std::string>& v) { return v ? Bind(i, *v) : BindNull(i); }
  Statement& BindBlob(int i, std::string_view bytes);
  Statement& BindNull(int i);

  // True when a row is ready, false when the statement is done.
  absl::StatusOr<bool> Step();
  // Steps to the end, ignoring rows (INSERT, UPDATE, DELETE).
  absl::Status Run();
  // Steps through every row, calling row() for each (it returns absl::Status or nothing);
  // stops at the first error, SQLite's or row()'s.
  template <typename F>
  absl::Status ForEachRow(F&& row);
  // Ready to run again with new bindings.
  void Reset();

  // Columns of the current row, numbered from 0.
  bool IsNull(int col) const;
  std::int64_t Int(int col) const;
  double Double(int col) const;
  std::string Text(int col) const;
  std::string Blob(int col) const;

 private:
  friend class Connection;
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Statement& Check(int rc, int index);

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  absl::Status bind_error_;
};

template <typename F>
absl::Status Statement::ForEachRow(F&& row) {
  while (true) {
    absl::StatusOr<bool> more = Step();
    if (!more.ok()) return more.status();
    if (!*more) return absl::OkStatus();
    if constexpr (std::is_void_v<decltype(row())>) {
      row();
    } else if (absl::Status s = row(); !s.ok()) {
      return s;
    }
  }
}

// Prepares `sql`, binds `args` to ?1, ?2, ... and runs it (a statement without rows).
template <typename... Args>
absl::Status Exec(Connection& db, std::string_view sql, const Args&... args) {
  absl::StatusOr<Statement> s = db.Prepare(sql);
  if (!s.ok()) return s.status();
  int i = 0;
  (s->Bind(++i, args), ...);
  return s->Run();
}

// Prepares `sql`, binds `args` and returns the first column of its first row as an integer;
// 0 when there is no row or the value is NULL (COUNT, MAX, COALESCE queries).
template <typename... Args>
absl::StatusOr<std::int64_t> QueryInt(Connection& db, std::string_view sql, const Args&... args) {
  absl::StatusOr<Statement> s = db.Prepare(sql);
  if (!s.ok()) return s.status();
  int i = 0;
  (s->Bind(++i, args), ...);
  absl::StatusOr<bool> row = s->Step();
  if (!row.ok()) return row.status();
  if (!*row || s->IsNull(0)) return 0;
  return s->Int(0);
}

enum class TransactionMode {
  kDeferred,  // takes the write lock at the first write (readers)
  kImmediate,  // takes it at BEGIN: a second writer waits (busy timeout) instead of failing half-way
};

// BEGIN ... COMMIT on a connection; rolls back unless committed.
class Transaction {
 public:
  static absl::StatusOr<Transaction> Begin(Connection& db, TransactionMode mode = TransactionMode::kImmediate);
  Transaction(Transaction&& other) noexcept : db_(other.db_) { other.db_ = nullptr; }
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction();

  absl::Status Commit();

 private:
  explicit Transaction(Connection* db) : db_(db) {}
  Connection* db_;  // null once committed or rolled back
};

}  // namespace strata::sqlite
