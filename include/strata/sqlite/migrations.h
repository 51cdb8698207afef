// Versioned schema migrations for a SQLite database: the cloud's SQLite backend and the edge
// buffer both record what they applied in schema_migrations (version, name, applied_at) and
// apply the rest at start-up, in order, each in its own transaction together with its record.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include <absl/status/status.h>

#include <strata/migration.h>
#include <strata/sqlite/sqlite.h>

namespace strata::sqlite {

// Applies each migration whose version is not recorded yet, in version order; concurrent
// openers of the same file serialise on BEGIN IMMEDIATE, so each is applied once. A database
// that records a version this code does not know (a newer release wrote it) is refused with
// FAILED_PRECONDITION before anything is changed; so is a list that is not strictly
// increasing (a bug). `what` names the database in the log ("edge buffer").
absl::Status Migrate(Connection& db, std::span<const Migration> migrations, std::int64_t now_ms,
                     std::string_view what);

}  // namespace strata::sqlite
