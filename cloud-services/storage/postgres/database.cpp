// The PostgreSQL backend (production): opens the pool, applies the migrations under an
// advisory lock, prepares the day partitions, and owns the three stores (see backend.h).
#include <memory>
#include <string>
#include <string_view>

#include <absl/strings/match.h>
#include <spdlog/spdlog.h>

#include "backend_database.h"
#include "backends.h"
#include "migrations.h"
#include "postgres/backend.h"
#include "sql.h"

namespace strata::storage {
namespace postgres {

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

namespace {

// Any constant shared by every Strata process: the key of the migration advisory lock.
constexpr std::int64_t kMigrationLockKey = 0x5374726174614d31;  // "StrataM1"
constexpr std::string_view kLockMigrations = "SELECT pg_advisory_lock($1)";
constexpr std::string_view kUnlockMigrations = "SELECT pg_advisory_unlock($1)";
constexpr std::string_view kCreateMigrationsTable =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version bigint PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)";
constexpr std::string_view kSelectMigration = "SELECT 1 FROM schema_migrations WHERE version = $1";
constexpr std::string_view kInsertMigration =
    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)";

void Unlock(pqxx::connection& c) {
  try {
    pqxx::nontransaction tx(c);
    tx.exec_params(Str(kUnlockMigrations), kMigrationLockKey);
  } catch (const std::exception& e) {
    // Session locks die with the session; a broken one releases it anyway.
    spdlog::warn("PostgreSQL: could not release the migration lock: {}", e.what());
  }
}

class PostgresDatabase final : public BackendDatabase<Context> {
 public:
  using BackendDatabase::BackendDatabase;

  std::string_view Backend() const override { return "postgresql"; }

  absl::Status Ping() override {
    return context().Run([&](PgPool::Lease& lease) -> absl::Status {
      pqxx::nontransaction tx(lease.conn());
      tx.exec(Str(sql::kPing));
      return absl::OkStatus();
    });
  }

  absl::Status Migrate() {
    return context().Run([&](PgPool::Lease& lease) -> absl::Status {
      pqxx::connection& c = lease.conn();
      {
        // Session lock: a second process starting now waits here until we are done.
        pqxx::nontransaction tx(c);
        tx.exec_params(Str(kLockMigrations), kMigrationLockKey);
      }
      try {
        {
          pqxx::work tx(c);
          tx.exec(Str(kCreateMigrationsTable));
          tx.commit();
        }
        for (const Migration& m : PostgresMigrations()) {
          pqxx::work tx(c);
          if (!tx.exec_params(Str(kSelectMigration), m.version).empty()) {
            tx.commit();
            continue;
          }
          tx.exec(Str(m.sql));
          tx.exec_params(Str(kInsertMigration), m.version, Str(m.name), context().Now());
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

  absl::Status PreparePartitions() {
    return context().Run([&](PgPool::Lease& lease) -> absl::Status {
      context().partitions().Prepare(lease.conn());
      return absl::OkStatus();
    });
  }
};

}  // namespace
}  // namespace postgres

absl::StatusOr<std::unique_ptr<Database>> OpenPostgresDatabase(const DatabaseOptions& options) {
  auto pool = PgPool::Create(options.url, options.pool_size);
  if (!pool.ok()) return pool.status();
  auto db = std::make_unique<postgres::PostgresDatabase>(
      std::make_unique<postgres::Context>(*std::move(pool), options.clock));
  if (auto s = db->Migrate(); !s.ok()) return s;
  if (auto s = db->PreparePartitions(); !s.ok()) return s;
  return std::unique_ptr<Database>(std::move(db));
}

}  // namespace strata::storage
