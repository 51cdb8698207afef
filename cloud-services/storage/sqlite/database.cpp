// The SQLite backend: the embedded default for the quickstart and small sites. Opens the one
// connection, applies the migrations, and owns the three stores (see backend.h).
#include <memory>
#include <string>

#include <absl/strings/str_cat.h>

#include "backend_database.h"
#include "backends.h"
#include "migrations.h"
#include "sql.h"
#include "sqlite/backend.h"
#include "strata/sqlite/migrations.h"

namespace strata::storage {
namespace sqlitedb {

absl::Status InApiWords(absl::Status s) {
  if (s.ok() || !sqlite::SqliteCode(s)) return s;
  const std::string detail(s.message());
  switch (s.code()) {
    case absl::StatusCode::kAlreadyExists: return ConflictError("SQLite", detail);
    case absl::StatusCode::kUnavailable: return UnavailableDbError("SQLite", detail);
    default: return InternalDbError("SQLite", detail);
  }
}

sqlite::Statement& BindValue(sqlite::Statement& s, int first, const v1::Value& v) {
  for (int k = 0; k < 4; ++k) s.BindNull(first + k);
  return VisitValue(v, [&](ValueKind kind, auto x) -> sqlite::Statement& {
    return s.Bind(first + static_cast<int>(kind) - 1, x);
  });
}

namespace {

class SqliteDatabase final : public BackendDatabase<Context> {
 public:
  using BackendDatabase::BackendDatabase;

  std::string_view Backend() const override { return "sqlite"; }

  absl::Status Ping() override {
    return context().Run([&](sqlite::Connection& db) -> absl::Status {
      STRATA_ASSIGN_OR_RETURN(auto s, db.Prepare(sql::kPing));
      return s.Run();
    });
  }
};

}  // namespace
}  // namespace sqlitedb

absl::StatusOr<std::unique_ptr<Database>> OpenSqliteDatabase(const std::string& path, Clock clock) {
  // In WAL mode synchronous=NORMAL loses no committed data on a process crash, only on power loss.
  auto conn = sqlite::Connection::Open({.path = path});
  if (!conn.ok()) {
    return absl::UnavailableError(absl::StrCat("cannot open SQLite database: ", conn.status().message()));
  }
  if (auto s = sqlite::Migrate(**conn, SqliteMigrations(), clock(), "SQLite"); !s.ok()) return s;
  return std::unique_ptr<Database>(std::make_unique<sqlitedb::SqliteDatabase>(
      std::make_unique<sqlitedb::Context>(*std::move(conn), std::move(clock))));
}

}  // namespace strata::storage
