#include "strata/sqlite/migrations.h"

#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

#include "strata/status_macros.h"

namespace strata::sqlite {
namespace {

constexpr std::string_view kCreateTable =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)";
constexpr std::string_view kHighest = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations";
constexpr std::string_view kSeen = "SELECT 1 FROM schema_migrations WHERE version = ?1";
constexpr std::string_view kRecord = "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)";

absl::StatusOr<std::int64_t> Highest(Connection& db) {
  STRATA_ASSIGN_OR_RETURN(auto s, db.Prepare(kHighest));
  STRATA_ASSIGN_OR_RETURN(bool row, s.Step());
  return row ? s.Int(0) : 0;
}

}  // namespace

absl::Status Migrate(Connection& db, std::span<const Migration> migrations, std::int64_t now_ms,
                     std::string_view what) {
  for (std::size_t i = 1; i < migrations.size(); ++i) {
    if (migrations[i].version <= migrations[i - 1].version) {
      return absl::FailedPreconditionError(absl::StrCat(std::string(what), ": migration versions are not increasing at ",
                                                        migrations[i].version));
    }
  }
  STRATA_RETURN_IF_ERROR(db.Exec(kCreateTable));
  const std::int64_t known = migrations.empty() ? 0 : migrations.back().version;
  STRATA_ASSIGN_OR_RETURN(const std::int64_t highest, Highest(db));
  if (highest > known) {
    return absl::FailedPreconditionError(
        absl::StrCat(std::string(what), " ", db.path(), " has schema version ", highest,
                     "; this release knows versions up to ", known, " (was it written by a newer release?)"));
  }
  for (const Migration& m : migrations) {
    // BEGIN IMMEDIATE serialises concurrent openers of the same file: the second one sees
    // the first one's record and skips the migration.
    STRATA_ASSIGN_OR_RETURN(auto tx, Transaction::Begin(db, TransactionMode::kImmediate));
    STRATA_ASSIGN_OR_RETURN(auto seen, db.Prepare(kSeen));
    STRATA_ASSIGN_OR_RETURN(bool applied, seen.Bind(1, m.version).Step());
    if (applied) continue;  // ~Transaction rolls back the empty transaction
    if (auto s = db.Exec(m.sql); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(std::string(what), ": migration ", m.version, " (", std::string(m.name),
                                                 "): ", std::string(s.message())));
    }
    STRATA_ASSIGN_OR_RETURN(auto record, db.Prepare(kRecord));
    STRATA_RETURN_IF_ERROR(record.Bind(1, m.version).Bind(2, m.name).Bind(3, now_ms).Run());
    STRATA_RETURN_IF_ERROR(tx.Commit());
    spdlog::info("{}: applied migration {} ({})", what, m.version, m.name);
  }
  return absl::OkStatus();
}

}  // namespace strata::sqlite
