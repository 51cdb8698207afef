// The two Database implementations behind OpenDatabase().
#pragma once

#include <memory>
#include <string>

#include <absl/status/statusor.h>

#include "storage/store.h"

namespace strata::storage {

// path: a file name (created if missing; its directory must exist) or ":memory:".
absl::StatusOr<std::unique_ptr<Database>> OpenSqliteDatabase(const std::string& path, Clock clock);

// options.url is handed to libpq as the connection string.
absl::StatusOr<std::unique_ptr<Database>> OpenPostgresDatabase(const DatabaseOptions& options);

}  // namespace strata::storage
