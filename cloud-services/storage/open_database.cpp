// OpenDatabase(): picks the backend from the URL scheme.
#include <string_view>

#include <absl/strings/match.h>
#include <absl/strings/str_cat.h>

#include "backends.h"
#include "storage/store.h"

namespace strata::storage {

absl::StatusOr<std::unique_ptr<Database>> OpenDatabase(const DatabaseOptions& options) {
  constexpr std::string_view kSqlite = "sqlite://";
  const std::string& url = options.url;
  if (absl::StartsWith(url, std::string(kSqlite))) {
    std::string path = url.substr(kSqlite.size());
    if (path.empty()) return absl::InvalidArgumentError("sqlite:// URL without a path");
    return OpenSqliteDatabase(path, options.clock);
  }
  if (absl::StartsWith(url, "postgresql://") || absl::StartsWith(url, "postgres://")) {
    if (options.pool_size < 1) return absl::InvalidArgumentError("pool_size must be at least 1");
    return OpenPostgresDatabase(options);
  }
  // Only the scheme is echoed: the rest of a URL may carry a password.
  auto colon = url.find(':');
  return absl::InvalidArgumentError(absl::StrCat(
      "unsupported database URL scheme '", colon == std::string::npos ? url : url.substr(0, colon),
      "' (want sqlite://PATH or postgresql://...)"));
}

}  // namespace strata::storage
