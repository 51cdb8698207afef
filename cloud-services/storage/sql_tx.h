// One transaction's worth of SQL, the same on both backends: the stores that are written once
// for both (commands.cpp) run their statements through this, and each backend implements it
// on its own connection (sqlite/sql_tx.cpp, postgres/sql_tx.cpp).
//
// Statements are portable SQL with SQLite's numbered placeholders (?1, ?2, ...; see sql.h);
// the PostgreSQL side turns them into $1, $2, ... . Arguments are 64-bit integers, text or
// NULL; rows are read through the accessors storage/rows.h uses.
#pragma once

#include <cstdint>
#include <cstddef>
#include <initializer_list>
#include <string>
#include <string_view>
#include <variant>

#include <absl/functional/function_ref.h>
#include <absl/status/status.h>
#include <absl/status/statusor.h>

namespace strata::storage {

using SqlArg = std::variant<std::nullptr_t, std::int64_t, std::string>;
using SqlArgs = std::initializer_list<SqlArg>;

class SqlRow {
 public:
  virtual ~SqlRow() = default;
  virtual bool IsNull(int i) const = 0;
  virtual std::string Text(int i) const = 0;
  virtual std::int64_t Int(int i) const = 0;
  virtual double Double(int i) const = 0;
  bool Bool(int i) const { return Int(i) != 0; }
};

class SqlTx {
 public:
  virtual ~SqlTx() = default;
  // Runs a statement; returns how many rows it inserted, updated or deleted.
  virtual absl::StatusOr<std::int64_t> Exec(std::string_view sql, SqlArgs args) = 0;
  // Runs a query and hands each row to `row`; an error from `row` stops it and is returned.
  virtual absl::Status Query(std::string_view sql, SqlArgs args,
                             absl::FunctionRef<absl::Status(const SqlRow&)> row) = 0;
};

class SqlRunner {
 public:
  virtual ~SqlRunner() = default;
  // The clock of the database's options.
  virtual std::int64_t Now() const = 0;
  // Runs `work` in one read-write transaction: committed when it returns OK, rolled back
  // otherwise. Errors come out in the API's words (store.h). PostgreSQL may run `work` again
  // (a lost connection, a deadlock): it must start from scratch each time, clearing what an
  // earlier attempt collected.
  virtual absl::Status InTransaction(absl::FunctionRef<absl::Status(SqlTx&)> work) = 0;
};

}  // namespace strata::storage
